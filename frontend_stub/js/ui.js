// Small DOM helpers shared by the pages: elements, form fields, messages, progress.

import { explain, language, t } from "./i18n.js";

/** h("button", { type: "button", onclick }, "text", child…) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false || child === "") continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let fieldIds = 0;

/** A labelled form control: field(t("x"), h("input", { name: "x" })). */
export function field(label, control, hint = null) {
  const id = control.id || `f${++fieldIds}`;
  control.id = id;
  const hintEl = hint ? h("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl);
}

export function select(name, options, selected = null, props = {}) {
  return h(
    "select",
    { name, ...props },
    options.map(([value, text]) => h("option", { value, selected: value === selected }, text)),
  );
}

/** The message area of a form or section: progress, success and errors. */
export function messages() {
  return h("div", { class: "messages", "aria-live": "polite" });
}

/** Progress with a spinner; `waiting` (nothing happens until someone else acts) has none. */
export function showProgress(box, text, { waiting = false } = {}) {
  const spinner = waiting ? null : h("span", { class: "spinner", "aria-hidden": "true" });
  replace(box, h("p", { class: waiting ? "progress waiting" : "progress", role: "status" }, spinner, text));
}

export function showOk(box, text) {
  replace(box, h("p", { class: "ok", role: "status" }, text));
}

export function showError(box, error, options = {}) {
  const { text, detail } = error instanceof Error && error.code ? explain(error, options) : { text: String(error.message || error), detail: "" };
  replace(box, h("div", { class: "error", role: "alert" }, h("p", {}, text), detail ? h("p", { class: "detail" }, detail) : null));
}

export function clearMessages(box) {
  box.replaceChildren();
}

/**
 * Runs a long action behind a button: the button is disabled and the box shows
 * progress (update it through the `progress` callback); errors show in plain words.
 * Resolves to the action's value, or undefined when it failed.
 */
export async function run(button, box, progressText, action, options = {}) {
  const buttons = button ? [button] : [];
  for (const b of buttons) {
    b.disabled = true;
    b.setAttribute("aria-busy", "true");
  }
  showProgress(box, progressText);
  try {
    const value = await action((text, options) => showProgress(box, text, options));
    clearMessages(box);
    return value;
  } catch (error) {
    showError(box, error, options);
    return undefined;
  } finally {
    for (const b of buttons) {
      b.disabled = false;
      b.removeAttribute("aria-busy");
    }
  }
}

export function formData(form) {
  return Object.fromEntries(new FormData(form).entries());
}

const locale = () => (language() === "en" ? "en-GB" : "de-DE");

export function dateTime(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(locale(), { dateStyle: "short", timeStyle: "medium" });
}

export function time(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleTimeString(locale());
}

export function date(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleDateString(locale());
}

/** A past moment, short: the time of day when it was today, else date and time. */
export function since(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  const today = at.toDateString() === new Date().toDateString();
  return today ? time(iso) : at.toLocaleString(locale(), { dateStyle: "short", timeStyle: "short" });
}

/** A past moment after a word that needs its preposition: "um 09:30" today, else
 * "am 07.12.26, 09:30" ("at 9:30 AM", "on 12/7/26, 9:30 AM"). */
export function at(iso) {
  if (!iso) return "–";
  const moment = new Date(iso);
  if (moment.toDateString() === new Date().toDateString()) return t("at.today", { time: time(iso) });
  return t("at.day", { date: moment.toLocaleString(locale(), { dateStyle: "short", timeStyle: "short" }) });
}

/** A value nobody knows any more: "unbekannt seit …" (the agent's last report). */
export function unknownSince(iso) {
  return h("span", { class: "flag unknown", "data-stale": "" }, t("unknownSince", { since: since(iso) }));
}

export function age(iso, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (seconds < 120) return t("age.seconds", { n: seconds });
  if (seconds < 7200) return t("age.minutes", { n: Math.round(seconds / 60) });
  if (seconds < 172800) return t("age.hours", { n: Math.round(seconds / 3600) });
  return t("age.days", { n: Math.round(seconds / 86400) });
}

export function yesNo(value) {
  if (value === null || value === undefined) return h("span", { class: "flag unknown" }, t("unknown"));
  return h("span", { class: `flag ${value ? "good" : "bad"}` }, value ? t("yes") : t("no"));
}

/**
 * A data table. On narrow screens CSS stacks each row as a card with the column
 * names beside the values (data-label); the explicit ARIA roles keep it a table
 * for screen readers although it is no longer displayed as one.
 */
export function table(headers, rows, caption = null) {
  const body = h("tbody", { role: "rowgroup" });
  labelRows(body, headers, rows);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { role: "table", class: "stacking" },
      caption ? h("caption", {}, caption) : null,
      h("thead", { role: "rowgroup" },
        h("tr", { role: "row" }, headers.map((x) => h("th", { scope: "col", role: "columnheader" }, x)))),
      body,
    ),
  );
}

/** Puts rows into a table body made by table(), labelled with the column names. */
export function labelRows(body, headers, rows) {
  for (const row of rows) {
    row.setAttribute("role", "row");
    [...row.children].forEach((cell, i) => {
      cell.setAttribute("role", "cell");
      if (headers[i]) cell.dataset.label = headers[i];
    });
  }
  replace(body, rows);
}

let sectionIds = 0;

/** A titled card; its heading names it, so it is a landmark region. */
export function section(title, ...children) {
  const id = `s${++sectionIds}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}
