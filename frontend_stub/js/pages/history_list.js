// Verlauf, the list (issue 17, point 4): newest first a page at a time, each broadcast's
// result ("15/20 bestätigt") and a state coloured by its outcome, filters by group, mode,
// date range and outcome, and the filtered list as CSV (point 5).

import { gql } from "../api.js";
import { csvTime, download, separator, SEPARATORS, setSeparator, stamp, toCsv } from "../csv.js";
import { t } from "../i18n.js";
import { clearMessages, dateTime, field, h, labelRows, messages, replace, select, showError, showProgress, table } from "../ui.js";

export const LIST_FIELDS = `id groupName mode status outcome confirmedCount triggerSource triggerCallerNumber
  triggerCallerName startedAt finishedAt memberCount quorum quorumReachedAt note failureCode
  stoppedAt stoppedBy stoppedVia stopReason`;
const PAGE = 20;
const LIST = `query($first: Int!, $after: String, $filter: BroadcastFilter) {
  broadcasts(first: $first, after: $after, filter: $filter) {
  nodes { ${LIST_FIELDS} } pageInfo { endCursor hasNextPage } } }`;
const LIVE = `subscription { broadcastUpdated { ${LIST_FIELDS} } }`;
const GROUPS = "{ groups { id name } }";
const MODES = ["TEST", "ALARM", "ALARM_RECORDED"];
export const OUTCOMES = ["RUNNING", "ALL_CONFIRMED", "QUORUM_REACHED", "UNCONFIRMED", "FAILED", "CANCELLED"];
// The CSV holds at most this many broadcasts; narrow the filters for more.
const CSV_MAX = 10_000;

/** The state a person reads first: worded and coloured by the outcome, not the status. */
export function stateCell(b) {
  const outcome = b.outcome || "RUNNING";
  return h("span", { class: `state ${outcome.toLowerCase()}`, "data-outcome": outcome }, t(`outcomeState.${outcome}`));
}

/** "15/20 bestätigt"; nothing for a trigger that never became a broadcast. */
export function resultText(b) {
  if (b.failureCode && !b.memberCount) return "–";
  return t("history.resultCount", { confirmed: b.confirmedCount ?? 0, members: b.memberCount });
}

// A day of the date inputs as the start of that local day, in ISO with its zone.
function dayStart(value, plusDays = 0) {
  if (!value) return null;
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function filterOf(form) {
  const v = Object.fromEntries(new FormData(form).entries());
  const filter = {};
  if (v.group) filter.groupId = v.group;
  if (v.mode) filter.mode = v.mode;
  if (v.outcome) filter.outcome = v.outcome;
  if (v.from) filter.startedFrom = dayStart(v.from);
  if (v.to) filter.startedTo = dayStart(v.to, 1); // the "to" day is included
  return filter;
}

// Who stopped a broadcast, how, when and why (issue 17, point 2), as CSV cells.
export const STOP_COLUMNS = ["stop.col.by", "stop.col.via", "stop.col.at", "stop.col.reason"];
export function stopCells(b) {
  if (!b.stoppedAt) return ["", "", "", ""];
  return [b.stoppedBy || t("stop.unknown"), t(`stop.via.${b.stoppedVia}`), csvTime(b.stoppedAt), b.stopReason || ""];
}

function csvRows(nodes) {
  const header = ["history.started", "history.finished", "history.group", "history.mode", "history.state",
    "history.confirmed", "history.members", "history.quorum", "history.source", "history.callerName",
    "history.callerNumber", ...STOP_COLUMNS, "history.id"].map((k) => t(k));
  const rows = nodes.map((b) => [csvTime(b.startedAt), csvTime(b.finishedAt), b.groupName,
    t(`mode.${b.mode}`), t(`outcomeState.${b.outcome}`), b.confirmedCount, b.memberCount, b.quorum ?? "",
    t(`triggerSource.${b.triggerSource}`), b.triggerCallerName || "", b.triggerCallerNumber || "",
    ...stopCells(b), b.id]);
  return [header, rows];
}

export function list(live, container, { caller }) {
  const box = messages();
  const byId = new Map();
  const headers = ["history.started", "history.group", "history.mode", "history.state", "history.result",
    "history.caller"];
  let cursor = null;
  let filter = {};
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => load(cursor) }, t("history.more"));

  function row(b) {
    return h("tr", { "data-id": b.id, "data-outcome": b.outcome },
      h("td", {}, h("a", { href: `#/history/${b.id}` }, dateTime(b.startedAt))),
      h("td", {}, b.groupName),
      h("td", {}, t(`mode.${b.mode}`)),
      h("td", {}, stateCell(b),
        b.failureCode ? h("small", { class: "failure" }, ` – ${t(`failureShort.${b.failureCode}`)}`) : null),
      h("td", { class: "num", "data-testid": "result" }, resultText(b)),
      h("td", {}, caller(b)));
  }

  function show() {
    const nodes = [...byId.values()].sort((a, b) => b.startedAt.localeCompare(a.startedAt) || b.id.localeCompare(a.id));
    labelRows(body, headers.map((k) => t(k)), nodes.map(row));
    empty.hidden = nodes.length > 0;
  }

  // Broadcasts a live event brought while a page was being read: the event is newer.
  const touched = new Set();
  let generation = 0;

  async function load(after = null) {
    touched.clear();
    const mine = ++generation;
    try {
      const { broadcasts } = await gql(LIST, { first: PAGE, after, filter });
      if (mine !== generation) return; // the filters changed meanwhile
      if (!after) byId.clear();
      for (const b of broadcasts.nodes) if (!touched.has(b.id)) byId.set(b.id, b);
      cursor = broadcasts.pageInfo.endCursor;
      more.hidden = !broadcasts.pageInfo.hasNextPage;
      clearMessages(box);
      show();
    } catch (error) {
      showError(box, error);
    }
  }

  async function exportCsv(button) {
    button.disabled = true;
    showProgress(box, t("history.csvBusy"));
    try {
      const nodes = [];
      let after = null;
      for (;;) {
        const { broadcasts } = await gql(LIST, { first: 100, after, filter });
        nodes.push(...broadcasts.nodes);
        if (!broadcasts.pageInfo.hasNextPage) break;
        if (nodes.length >= CSV_MAX) {
          showError(box, { message: t("history.csvTooMany", { n: CSV_MAX }) });
          return;
        }
        after = broadcasts.pageInfo.endCursor;
      }
      const [header, rows] = csvRows(nodes);
      download(`rundrufe_${stamp()}.csv`, toCsv(header, rows, separator()));
      clearMessages(box);
    } catch (error) {
      showError(box, error);
    } finally {
      button.disabled = false;
    }
  }

  const groupSelect = select("group", [["", t("history.filter.all")]]);
  const form = h("form", { class: "inline filters", "aria-label": t("history.filter.label"), onsubmit: (e) => e.preventDefault() },
    field(t("history.group"), groupSelect),
    field(t("history.mode"), select("mode", [["", t("history.filter.all")], ...MODES.map((m) => [m, t(`mode.${m}`)])])),
    field(t("history.filter.outcome"), select("outcome", [["", t("history.filter.all")], ...OUTCOMES.map((o) => [o, t(`outcomeState.${o}`)])])),
    field(t("history.filter.from"), h("input", { type: "date", name: "from" })),
    field(t("history.filter.to"), h("input", { type: "date", name: "to" })),
    h("button", { type: "reset", class: "secondary" }, t("history.filter.reset")));
  const apply = () => {
    filter = filterOf(form);
    cursor = null;
    load();
  };
  form.addEventListener("change", apply);
  form.addEventListener("reset", () => setTimeout(apply));

  const sepSelect = select("separator", SEPARATORS.map((s) => [s, t(`csv.separator.${s === ";" ? "semicolon" : "comma"}`)]), separator(),
    { onchange: (e) => setSeparator(e.target.value) });
  const csvButton = h("button", { type: "button", class: "secondary", onclick: (e) => exportCsv(e.currentTarget) }, t("history.csv"));
  const exportBar = h("div", { class: "actions export no-print" }, csvButton, field(t("csv.separator"), sepSelect));

  const empty = h("p", { hidden: true }, t("history.empty"));
  const wrap = table(headers.map((k) => t(k)), []);
  const body = wrap.querySelector("tbody");
  replace(container, h("h1", {}, t("history.title")), form, exportBar, empty, wrap, more, box);
  gql(GROUPS).then(({ groups }) => {
    for (const g of groups) groupSelect.append(h("option", { value: g.id }, g.name));
  }).catch((error) => showError(box, error));
  load();
  const stop = live.subscribe(LIVE, {}, ({ broadcastUpdated: b }) => {
    // With filters set, a live event updates a broadcast shown; new ones come on reload.
    if (Object.keys(filter).length && !byId.has(b.id)) return;
    touched.add(b.id);
    byId.set(b.id, b);
    show();
  });
  const stopReconnect = live.on("reconnect", () => load());
  return () => {
    stop();
    stopReconnect();
  };
}
