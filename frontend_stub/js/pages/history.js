// Verlauf: the broadcasts, newest first, and one broadcast's call timeline per member, live.

import { gql } from "../api.js";
import { t } from "../i18n.js";
import { dateTime, h, labelRows, messages, replace, showError, table, time } from "../ui.js";

const FIELDS = `id groupName mode status triggerCallerNumber triggerCallerName startedAt finishedAt
  memberCount quorum quorumReachedAt note failureCode`;
const ATTEMPTS = `attempts { id memberName memberExtension attemptNo startedAt ringingAt answeredAt
  confirmedAt endedAt outcome detail lateReason lateFrom lateUntil }`;
const LIST = `query($after: String) { broadcasts(first: 20, after: $after) {
  nodes { ${FIELDS} } pageInfo { endCursor hasNextPage } } }`;
const ONE = `query($id: ID!) { broadcast(id: $id) { ${FIELDS} ${ATTEMPTS} } }`;
const LIVE_LIST = `subscription { broadcastUpdated { ${FIELDS} } }`;
const LIVE_ONE = `subscription($id: ID!) { broadcastUpdated(broadcastId: $id) { ${FIELDS} ${ATTEMPTS} } }`;
const STEPS = ["startedAt", "ringingAt", "answeredAt", "confirmedAt", "endedAt"];

export function render({ main, live, params }) {
  const container = h("div", {}, h("p", {}, t("loading")));
  main.append(container);
  return params[0] ? detail(live, container, params[0]) : list(live, container);
}

// A trigger that never became a broadcast (JOB_FILE_DAMAGED): worded from its code,
// with the file the job service kept (in note).
function failure(b) {
  return b.failureCode
    ? h("p", { class: "failure", "data-failure": b.failureCode }, t(`failure.${b.failureCode}`, { file: b.note }))
    : null;
}

function caller(b) {
  return [b.triggerCallerName, b.triggerCallerNumber].filter(Boolean).join(" · ") || "–";
}

function list(live, container) {
  const box = messages();
  const byId = new Map();
  const headers = ["history.started", "history.group", "history.mode", "history.status", "history.caller", "history.members"];
  let cursor = null;
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => load(cursor) }, t("history.more"));

  function row(b) {
    return h("tr", { "data-id": b.id },
      h("td", {}, h("a", { href: `#/history/${b.id}` }, dateTime(b.startedAt))),
      h("td", {}, b.groupName),
      h("td", {}, t(`mode.${b.mode}`)),
      h("td", {}, h("span", { class: `status ${b.status.toLowerCase()}` }, t(`status.${b.status}`)),
        b.failureCode ? h("small", { class: "failure" }, ` – ${t(`failureShort.${b.failureCode}`)}`) : null),
      h("td", {}, caller(b)),
      h("td", { class: "num" }, b.memberCount));
  }

  function show() {
    const nodes = [...byId.values()].sort((a, b) => b.startedAt.localeCompare(a.startedAt));
    labelRows(body, headers.map((k) => t(k)), nodes.map(row));
    empty.hidden = nodes.length > 0;
  }

  // Broadcasts a live event brought while a page was being read: the event is newer.
  const touched = new Set();

  async function load(after = null) {
    touched.clear();
    try {
      const { broadcasts } = await gql(LIST, { after });
      for (const b of broadcasts.nodes) if (!touched.has(b.id)) byId.set(b.id, b);
      cursor = broadcasts.pageInfo.endCursor;
      more.hidden = !broadcasts.pageInfo.hasNextPage;
      show();
    } catch (error) {
      showError(box, error);
    }
  }

  const empty = h("p", { hidden: true }, t("history.empty"));
  const wrap = table(headers.map((k) => t(k)), []);
  const body = wrap.querySelector("tbody");
  replace(container, h("h1", {}, t("history.title")), empty, wrap, more, box);
  load();
  const stop = live.subscribe(LIVE_LIST, {}, ({ broadcastUpdated: b }) => {
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

function detail(live, container, id) {
  const box = messages();
  const view = h("div");
  replace(container, h("p", {}, h("a", { href: "#/history" }, `← ${t("history.back")}`)), view, box);

  function show(b) {
    const members = new Map();
    const sorted = [...b.attempts].sort((x, y) => x.memberName.localeCompare(y.memberName) || x.attemptNo - y.attemptNo);
    for (const a of sorted) {
      if (!members.has(a.memberName)) members.set(a.memberName, []);
      members.get(a.memberName).push(a);
    }
    replace(
      view,
      h("h1", {}, t("history.detail", { group: b.groupName, time: dateTime(b.startedAt) })),
      h("dl", { class: "facts" },
        h("dt", {}, t("history.mode")), h("dd", {}, t(`mode.${b.mode}`)),
        h("dt", {}, t("history.status")), h("dd", {},
          h("span", { class: `status ${b.status.toLowerCase()}`, "data-testid": "broadcast-status" }, t(`status.${b.status}`)),
          b.status === "RUNNING" ? h("span", { class: "live" }, ` – ${t("history.live")}`) : null),
        h("dt", {}, t("history.caller")), h("dd", {}, caller(b)),
        h("dt", {}, t("history.members")), h("dd", {}, b.memberCount),
        b.quorum ? [h("dt", {}, t("history.quorum")), h("dd", {}, b.quorum)] : null,
        b.note && !b.failureCode ? [h("dt", {}, t("history.note")), h("dd", {}, b.note)] : null),
      failure(b),
      members.size
        ? h("ol", { class: "timeline" }, [...members].map(([name, attempts]) => member(name, attempts)))
        : b.failureCode ? null : h("p", {}, t("history.noAttempts")),
    );
  }

  function member(name, attempts) {
    const last = attempts[attempts.length - 1];
    return h("li", { class: "member", "data-member": name },
      h("h2", {}, name, last.memberExtension ? ` (${last.memberExtension})` : "",
        last.outcome ? h("span", { class: `outcome ${last.outcome.toLowerCase()}` }, t(`outcome.${last.outcome}`)) : null),
      h("ol", { class: "attempts" }, attempts.map((a) =>
        h("li", {},
          h("span", { class: "attempt-no" },
            a.outcome === "NOT_CALLED" ? t("history.notCalled") : t("history.attempt", { n: a.attemptNo })),
          a.lateReason ? h("p", { class: "late", "data-late": a.lateReason }, late(a)) : null,
          h("ul", { class: "steps" }, STEPS.filter((s) => a[s]).map((s) =>
            h("li", {}, h("time", { datetime: a[s] }, time(a[s])), " ",
              s === "endedAt" && a.outcome ? `${t("step.endedAt")}: ${t(`outcome.${a.outcome}`)}` : t(`step.${s}`)))),
          a.detail ? h("p", { class: "detail" }, a.detail) : null))));
  }

  // Why an attempt began after the broadcast timeout, or why a member was not called:
  // worded here from the code, with the outage's times (issue 14, point 11).
  function late(a) {
    const kind = a.outcome === "NOT_CALLED" ? "notCalled" : "late";
    return t(`${kind}.${a.lateReason}`, { from: dateTime(a.lateFrom), until: dateTime(a.lateUntil) });
  }

  // Set when a live event came while the broadcast was being read: the event is newer.
  let eventSinceLoad = false;

  async function load() {
    eventSinceLoad = false;
    try {
      const { broadcast } = await gql(ONE, { id });
      if (!eventSinceLoad) show(broadcast);
    } catch (error) {
      showError(box, error);
    }
  }

  load();
  const stop = live.subscribe(LIVE_ONE, { id }, ({ broadcastUpdated }) => {
    eventSinceLoad = true;
    show(broadcastUpdated);
  });
  const stopReconnect = live.on("reconnect", load);
  return () => {
    stop();
    stopReconnect();
  };
}
