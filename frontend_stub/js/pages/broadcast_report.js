// One broadcast's report (issue 17, point 5): every attempt as CSV, and a printable page
// with the summary, the timeline and every member's outcome. The printable part is built
// beside the screen view and shown only in print (styles.css, @media print).

import { csvTime, download, separator, stamp, toCsv } from "../csv.js";
import { t } from "../i18n.js";
import { dateTime, h, replace, time } from "../ui.js";
import { memberState } from "./broadcast_overview.js";
import { resultText, STOP_COLUMNS, stopCells } from "./history_list.js";

const STEPS = ["startedAt", "ringingAt", "answeredAt", "heldAt", "resumedAt", "confirmedAt", "endedAt"];

function byMember(b) {
  const members = new Map();
  const sorted = [...b.attempts].sort((x, y) => x.memberName.localeCompare(y.memberName) || x.attemptNo - y.attemptNo);
  for (const a of sorted) {
    if (!members.has(a.memberName)) members.set(a.memberName, []);
    members.get(a.memberName).push(a);
  }
  return members;
}

/** A member's outcome over all attempts: confirmed if any attempt was, else the last. */
function memberOutcome(attempts) {
  const confirmed = attempts.find((a) => a.outcome === "CONFIRMED");
  return confirmed ? confirmed : attempts[attempts.length - 1];
}

function duration(b) {
  if (!b.finishedAt) return "–";
  const s = Math.max(0, Math.round((Date.parse(b.finishedAt) - Date.parse(b.startedAt)) / 1000));
  return t("report.duration", { m: Math.floor(s / 60), s: s % 60 });
}

// Plain text: the screen view's caller cell carries the attributes tests and styles find.
function callerText(b) {
  const who = [b.triggerCallerName, b.triggerCallerNumber].filter(Boolean).join(" · ");
  return [t(`triggerSource.${b.triggerSource}`), who].filter(Boolean).join(" · ");
}

function stepText(a, s) {
  return s === "endedAt" && a.outcome ? `${t("step.endedAt")}: ${t(`outcome.${a.outcome}`)}` : t(`step.${s}`);
}

/** Every attempt of the broadcast, one row each, with each step's time. */
export function broadcastCsv(b, { attemptDetail }) {
  const header = ["report.member", "report.extension", "report.attempt", "report.outcome",
    ...STEPS.map((s) => `report.col.${s}`), "report.detail", "report.late"].map((k) => t(k));
  const rows = [...byMember(b).values()].flat().map((a) => [a.memberName, a.memberExtension || "", a.attemptNo,
    a.outcome ? t(`outcome.${a.outcome}`) : "", ...STEPS.map((s) => csvTime(a[s])),
    a.detail ? attemptDetail(a.detail) : "", a.lateReason ? t(`lateShort.${a.lateReason}`) : ""]);
  // The summary after a blank line: the attempts' header stays the file's first line.
  const stop = stopCells(b);
  const summary = [
    [t("report.summary")],
    [t("history.group"), b.groupName], [t("history.mode"), t(`mode.${b.mode}`)],
    [t("history.caller"), callerText(b)],
    [t("report.start"), csvTime(b.startedAt)], [t("report.end"), csvTime(b.finishedAt)],
    [t("report.durationLabel"), duration(b)], [t("history.state"), t(`outcomeState.${b.outcome}`)],
    [t("history.result"), resultText(b)], [t("history.quorum"), b.quorum ?? ""],
    ...STOP_COLUMNS.map((k, i) => [t(k), stop[i]]),
  ];
  return toCsv(header, [...rows, [], ...summary], separator());
}

function printable(b) {
  const members = byMember(b);
  const events = b.attempts.flatMap((a) => STEPS.filter((s) => a[s]).map((s) => ({ at: a[s], a, s })))
    .sort((x, y) => Date.parse(x.at) - Date.parse(y.at));
  const cells = (...xs) => h("tr", {}, xs.map((x) => h("td", {}, x)));
  const head = (...keys) => h("thead", {}, h("tr", {}, keys.map((k) => h("th", {}, t(k)))));
  return [
    h("h1", {}, t("report.title", { group: b.groupName })),
    h("dl", { class: "report-facts" },
      h("dt", {}, t("history.mode")), h("dd", {}, t(`mode.${b.mode}`)),
      h("dt", {}, t("history.caller")), h("dd", {}, callerText(b)),
      h("dt", {}, t("report.start")), h("dd", {}, dateTime(b.startedAt)),
      h("dt", {}, t("report.end")), h("dd", {}, b.finishedAt ? dateTime(b.finishedAt) : "–"),
      h("dt", {}, t("report.durationLabel")), h("dd", {}, duration(b)),
      h("dt", {}, t("history.state")), h("dd", {}, t(`outcomeState.${b.outcome}`)),
      h("dt", {}, t("history.result")), h("dd", { "data-testid": "report-result" }, resultText(b)),
      b.quorum ? [h("dt", {}, t("history.quorum")), h("dd", {}, b.quorum)] : null,
      // Who stopped it (issue 17, point 2), worded as on the screen (broadcast_stop.js).
      b.stoppedAt ? [h("dt", {}, t("stop.stopped")), h("dd", {}, t("stop.by", {
        by: b.stoppedBy || t("stop.unknown"), via: t(`stop.via.${b.stoppedVia}`), at: dateTime(b.stoppedAt) }),
      b.stopReason ? ` – ${t("stop.reasonShown", { reason: b.stopReason })}` : "")] : null),
    h("h2", {}, t("report.members")),
    h("table", { class: "report-members" }, head("report.member", "report.extension", "report.attempts", "report.outcome", "report.col.confirmedAt"),
      h("tbody", {}, [...members].map(([name, attempts]) => {
        const last = memberOutcome(attempts);
        return h("tr", { "data-report-member": name },
          h("td", {}, name), h("td", {}, last.memberExtension || ""), h("td", { class: "num" }, attempts.length),
          // The member's state in the overview's words (broadcast_overview.js), so the
          // printed report and the screen say the same.
          h("td", {}, t(`overview.state.${memberState(attempts)}`)), h("td", {}, last.confirmedAt ? time(last.confirmedAt) : ""));
      }))),
    h("h2", {}, t("report.timeline")),
    h("table", { class: "report-timeline" }, head("report.time", "report.member", "report.attempt", "report.step"),
      h("tbody", {}, events.map((e) => cells(time(e.at), e.a.memberName, e.a.attemptNo, stepText(e.a, e.s))))),
  ];
}

/** The report's buttons (CSV, print) and its printable section; update(b) on each change. */
export function createReport({ attemptDetail }) {
  let current = null;
  const csv = h("button", { type: "button", class: "secondary", disabled: true, onclick: () => {
    if (current) download(`rundruf_${current.groupName.replace(/[^\p{L}\p{N}]+/gu, "_")}_${stamp(new Date(current.startedAt))}.csv`, broadcastCsv(current, { attemptDetail }));
  } }, t("report.csv"));
  const print = h("button", { type: "button", class: "secondary", disabled: true, onclick: () => window.print() }, t("report.print"));
  const section = h("section", { class: "print-report", "data-testid": "print-report" });
  return {
    bar: h("div", { class: "actions export no-print" }, csv, print),
    section,
    update(b) {
      current = b;
      csv.disabled = print.disabled = false;
      replace(section, printable(b));
    },
  };
}
