// CSV files made in the browser from what the API answered (issue 17, point 5; why in
// the browser: docs/decisions/reports-export.md). German Excel opens UTF-8 with a BOM
// and semicolons; a comma is selectable. Cells that a spreadsheet would take for a
// formula (= + - @, tab, carriage return first, also after spaces) get a leading apostrophe (OWASP).

export const BOM = "\uFEFF";
export const SEPARATORS = [";", ","];
const STORE = "rundruf.csvSeparator";

export function separator() {
  const kept = localStorage.getItem(STORE);
  return SEPARATORS.includes(kept) ? kept : ";";
}

export function setSeparator(value) {
  if (SEPARATORS.includes(value)) localStorage.setItem(STORE, value);
}

/** One cell: numbers as they are; text neutralised, quoted when it must be. */
export function cell(value, sep = ";") {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return String(value);
  let text = String(value);
  if (/^\s*[=+\-@\t\r]/.test(text)) text = `'${text}`;
  if (text.includes(sep) || /["\r\n]/.test(text)) text = `"${text.replaceAll('"', '""')}"`;
  return text;
}

/** The whole file: BOM, the header, one line per row, CRLF as RFC 4180 says. */
export function toCsv(header, rows, sep = separator()) {
  const lines = [header, ...rows].map((row) => row.map((v) => cell(v, sep)).join(sep));
  return BOM + lines.join("\r\n") + "\r\n";
}

/** Offers the text as a download named `filename`. */
export function download(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A file name's time part: 2026-12-07_0930 (local time). */
export function stamp(date = new Date()) {
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}_${p(date.getHours())}${p(date.getMinutes())}`;
}

/** A moment as spreadsheets read it: 2026-12-07 09:30:05 (local time); empty if none. */
export function csvTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
