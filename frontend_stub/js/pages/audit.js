// Protokoll (issue 17, point 7): who changed what and when, newest first, a page at a
// time; filters by user, kind and date. Tenant admins see their tenant, the platform
// admin every tenant. Actions are codes (group.create), worded here.

import { gql } from "../api.js";
import { t } from "../i18n.js";
import { clearMessages, dateTime, field, h, labelRows, messages, replace, select, showError, table } from "../ui.js";

const QUERY = `query($first: Int!, $after: String, $filter: AuditFilter) {
  auditLog(first: $first, after: $after, filter: $filter) {
    nodes { id at action target tenantName actorEmail details }
    pageInfo { endCursor hasNextPage } actors { id email } } }`;
export const KINDS = ["tenant", "license", "user", "password", "installation", "pbx_settings", "pbx", "directory",
  "group", "broadcast", "announcement", "audio", "notice"];
const PAGE = 50;
// BroadcastMode's numbers (api/models/enums.py) as the schema names them.
const MODES = { 1: "TEST", 2: "ALARM", 3: "ALARM_RECORDED" };

function dayStart(value, plusDays = 0) {
  if (!value) return null;
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

/** The action in words; an action this page does not know yet as its code. */
function actionText(action) {
  const key = `audit.action.${action}`;
  const text = t(key);
  return text === key ? action : text;
}

// Details are short values (names, counts, ids); never secrets (the service writes none).
// Their names are codes, worded where known; yes/no for flags.
export function detailsText(details) {
  const word = (k) => {
    const key = `audit.detail.${k}`;
    const text = t(key);
    return text === key ? k : text;
  };
  const value = (k, v) => {
    if (typeof v === "boolean") return t(v ? "yes" : "no");
    if (k === "role") return t(`role.${String(v).toUpperCase()}`); // stored as its value
    if (k === "mode" && MODES[v]) return t(`mode.${MODES[v]}`); // stored as its number
    if (k === "at" && typeof v === "string") return dateTime(v); // stored as ISO text
    return typeof v === "object" ? JSON.stringify(v) : v;
  };
  return Object.entries(details || {}).map(([k, v]) => `${word(k)}: ${value(k, v)}`).join(", ");
}

export function render({ main, me }) {
  const platform = me.role === "PLATFORM_ADMIN";
  const box = messages();
  const headers = ["audit.at", "audit.who", ...(platform ? ["audit.tenant"] : []), "audit.what", "audit.target", "audit.details"];
  let cursor = null;
  let filter = {};
  let generation = 0;
  const rows = [];
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => load(cursor) }, t("audit.more"));
  const userSelect = select("user", [["", t("audit.filter.everyone")]]);
  const form = h("form", { class: "inline filters", "aria-label": t("audit.filter.label"), onsubmit: (e) => e.preventDefault() },
    field(t("audit.who"), userSelect),
    field(t("audit.kind"), select("kind", [["", t("audit.filter.all")], ...KINDS.map((k) => [k, t(`audit.kind.${k}`)])])),
    field(t("audit.filter.from"), h("input", { type: "date", name: "from" })),
    field(t("audit.filter.to"), h("input", { type: "date", name: "to" })),
    h("button", { type: "reset", class: "secondary" }, t("audit.filter.reset")));
  const apply = () => {
    const v = Object.fromEntries(new FormData(form).entries());
    filter = {};
    if (v.user) filter.userId = v.user;
    if (v.kind) filter.kind = v.kind;
    if (v.from) filter.since = dayStart(v.from);
    if (v.to) filter.until = dayStart(v.to, 1);
    load();
  };
  form.addEventListener("change", apply);
  form.addEventListener("reset", () => setTimeout(apply));

  function row(e) {
    return h("tr", { "data-action": e.action },
      h("td", {}, h("time", { datetime: e.at }, dateTime(e.at))),
      h("td", { class: "audit-who" }, e.actorEmail || t("audit.system")),
      platform ? h("td", {}, e.tenantName || "–") : null,
      h("td", {}, actionText(e.action)),
      h("td", {}, e.target ? h("code", { class: "audit-target" }, e.target) : ""),
      h("td", { class: "detail" }, detailsText(e.details)));
  }

  async function load(after = null) {
    const mine = ++generation;
    try {
      const { auditLog } = await gql(QUERY, { first: PAGE, after, filter });
      if (mine !== generation) return;
      if (!after) rows.length = 0;
      rows.push(...auditLog.nodes);
      cursor = auditLog.pageInfo.endCursor;
      more.hidden = !auditLog.pageInfo.hasNextPage;
      const chosen = userSelect.value;
      replace(userSelect, h("option", { value: "" }, t("audit.filter.everyone")),
        auditLog.actors.map((a) => h("option", { value: a.id, selected: a.id === chosen }, a.email)));
      labelRows(body, headers.map((k) => t(k)), rows.map(row));
      empty.hidden = rows.length > 0;
      clearMessages(box);
    } catch (error) {
      showError(box, error);
    }
  }

  const empty = h("p", { hidden: true }, t("audit.empty"));
  const wrap = table(headers.map((k) => t(k)), []);
  const body = wrap.querySelector("tbody");
  replace(main, h("h1", {}, t("audit.title")), h("p", { class: "hint" }, t(platform ? "audit.introPlatform" : "audit.intro")),
    form, empty, wrap, more, box);
  load();
  return null;
}
