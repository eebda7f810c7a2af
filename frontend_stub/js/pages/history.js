// Verlauf: the broadcasts, newest first, and one broadcast's call timeline per member, live.

import { gql } from "../api.js";
import { t } from "../i18n.js";
import { dateTime, h, messages, replace, showError, time } from "../ui.js";
import { createOverview } from "./broadcast_overview.js";
import { createReport } from "./broadcast_report.js";
import { list } from "./history_list.js";
import { STOP_FIELDS, STOP_ROUTE, settleStop, stopButton, stoppedFacts } from "./broadcast_stop.js";

const FIELDS = `id groupName mode status outcome confirmedCount triggerSource triggerCallerNumber triggerCallerName startedAt finishedAt
  memberCount quorum quorumReachedAt note failureCode ${STOP_FIELDS}`;
const ATTEMPTS = `attempts { id memberName memberExtension attemptNo startedAt ringingAt answeredAt
  heldAt resumedAt confirmedAt endedAt outcome detail lateReason lateFrom lateUntil }`;
const LIST = `query($after: String) { broadcasts(first: 20, after: $after) {
  nodes { ${FIELDS} } pageInfo { endCursor hasNextPage } } }`;
const ONE = `query($id: ID!) { broadcast(id: $id) { ${FIELDS} ${STOP_ROUTE} ${ATTEMPTS} } }`;
const LIVE_LIST = `subscription { broadcastUpdated { ${FIELDS} } }`;
const LIVE_ONE = `subscription($id: ID!) { broadcastUpdated(broadcastId: $id) { ${FIELDS} ${STOP_ROUTE} ${ATTEMPTS} } }`;
const STEPS = ["startedAt", "ringingAt", "answeredAt", "heldAt", "resumedAt", "confirmedAt", "endedAt"];

// An attempt's steps in the order they happened: a member may hold the call after taking
// it back (the latest of each is kept), so "on hold" can come after "resumed".
function steps(a) {
  return STEPS.filter((s) => a[s]).sort((x, y) => Date.parse(a[x]) - Date.parse(a[y]));
}

// Details the agent sends as a code (a call ended on hold at the timeout or at the
// quorum, a call ended for want of the SRTP the installation requires, the connection
// to the PBX that could not be made or broke): worded here; other details are the
// PBX's or the agent's own words and shown as they are.
const DETAIL_CODES = new Set([
  "endedOnHold", "endedOnHoldQuorum", "srtpRequired", "connectionLost", "connectFailed",
  "tlsCertificate", "tlsClientCertificate", "tlsHandshake", "tlsConfig", "unresolvable",
  "localAddress", "network", "broadcastStopped",
]);

// Why a member was not called, as the agent's code: the quorum, or a stop (issue 17).
const NOT_CALLED_CODES = new Set(["quorumReached", "broadcastStopped"]);

function attemptDetail(detail) {
  return DETAIL_CODES.has(detail) ? t(`detail.${detail}`) : detail;
}

export function render({ main, live, params, me }) {
  const container = h("div", {}, h("p", {}, t("loading")));
  main.append(container);
  return params[0] ? detail(live, container, params[0], me) : list(live, container, { caller });
}

// A trigger that never became a broadcast, worded from its code with what note holds:
// JOB_FILE_DAMAGED the file the job service kept, AGENT_UNREACHABLE and OUTCOME_UNKNOWN
// the agent's last heartbeat (none: it never reported).
const SINCE_CODES = new Set(["AGENT_UNREACHABLE", "OUTCOME_UNKNOWN"]);

function failure(b) {
  if (!b.failureCode) return null;
  const since = b.note ? dateTime(b.note) : t("failure.never");
  const params = SINCE_CODES.has(b.failureCode) ? { since } : { file: b.note };
  return h("p", { class: "failure", "data-failure": b.failureCode }, t(`failure.${b.failureCode}`, params));
}

// The agent's own summary line (English, for its log and older agents' notes): the page
// words its own from the attempts, so these parts of the note are left out.
const AGENT_SUMMARY = [
  /^\d+ of \d+ called members confirmed$/,
  /^\d+ skipped \(busy\)$/,
  /^\d+ not called \(the timeout had passed\)$/,
  /^not confirmed: /,
  /^quorum of \d+ reached(, \d+ members not called)?$/,
  /^stopped$/, // a stop: the page says who stopped it (issue 17)
];

// Parts of the note the agent sends as a code (a full disk, say): worded here.
const NOTE_CODES = new Set(["journalNotWritable"]);

function agentNotes(note) {
  return (note || "").split("; ").filter((part) => part && !AGENT_SUMMARY.some((re) => re.test(part)))
    .map((part) => (NOTE_CODES.has(part) ? t(`note.${part}`) : part)).join("; ");
}

// How the broadcast went, from each member's attempts (their outcome codes).
function result(b, members) {
  let confirmed = 0, called = 0, skipped = 0, notCalled = 0, spared = 0;
  const unconfirmed = [];
  for (const [name, attempts] of members) {
    const last = attempts[attempts.length - 1];
    if (last.outcome === "SKIPPED_BUSY") skipped += 1;
    else if (last.outcome === "NOT_CALLED" && last.lateReason) notCalled += 1;
    else if (last.outcome === "NOT_CALLED") spared += 1;
    else {
      called += 1;
      if (attempts.some((a) => a.outcome === "CONFIRMED")) confirmed += 1;
      else unconfirmed.push(name);
    }
  }
  // Older agents gave members the quorum spared no row at all.
  if (b.quorumReachedAt && b.status !== "RUNNING") spared += Math.max(0, b.memberCount - members.size);
  const parts = [t("summary.confirmed", { confirmed, called })];
  if (skipped) parts.push(t("summary.skipped", { n: skipped }));
  if (notCalled) parts.push(t("summary.notCalled", { n: notCalled }));
  if (b.quorumReachedAt) parts.push(t(spared ? "summary.spared" : "summary.quorum", { n: spared, quorum: b.quorum }));
  else if (unconfirmed.length && b.status !== "RUNNING") {
    const shown = unconfirmed.slice(0, 10).join(", ") + (unconfirmed.length > 10 ? " …" : "");
    parts.push(t("summary.unconfirmed", { names: shown }));
  }
  return parts.join("; ");
}

// How the alarm was raised (worded from its code), then who: the caller's name and
// number, or the website's user.
function caller(b) {
  const who = [b.triggerCallerName, b.triggerCallerNumber].filter(Boolean).join(" · ");
  return [h("span", { class: "trigger-source", "data-trigger-source": b.triggerSource }, t(`triggerSource.${b.triggerSource}`)),
    who ? ` · ${who}` : ""];
}

function detail(live, container, id, me) {
  const box = messages();
  const view = h("div");
  replace(container, h("p", {}, h("a", { href: "#/history" }, `← ${t("history.back")}`)), view, box);
  // Counters, progress and the members' table; keeps its filter over live re-renders.
  const overview = createOverview((name, attempts) => member(name, attempts));
  // Issue 17, point 5: CSV of every attempt, and the report shown only in print.
  const report = createReport({ attemptDetail });
  view.before(report.bar);
  box.after(report.section);

  function show(b) {
    settleStop(b);
    report.update(b);
    const members = new Map();
    const sorted = [...b.attempts].sort((x, y) => x.memberName.localeCompare(y.memberName) || x.attemptNo - y.attemptNo);
    for (const a of sorted) {
      if (!members.has(a.memberName)) members.set(a.memberName, []);
      members.get(a.memberName).push(a);
    }
    const notes = agentNotes(b.note);
    replace(
      view,
      h("h1", {}, t("history.detail", { group: b.groupName, time: dateTime(b.startedAt) })),
      h("dl", { class: "facts" },
        h("dt", {}, t("history.mode")), h("dd", {}, t(`mode.${b.mode}`)),
        h("dt", {}, t("history.status")), h("dd", {},
          h("span", { class: `status ${b.status.toLowerCase()}`, "data-outcome": b.outcome, "data-testid": "broadcast-status" }, t(`status.${b.status}`)),
          b.status === "RUNNING" ? h("span", { class: "live" }, ` – ${t("history.live")}`) : null),
        stoppedFacts(b),
        h("dt", {}, t("history.caller")), h("dd", {}, caller(b)),
        h("dt", {}, t("history.members")), h("dd", {}, b.memberCount),
        b.quorum ? [h("dt", {}, t("history.quorum")), h("dd", {}, b.quorum)] : null,
        members.size ? [h("dt", {}, t("history.result")), h("dd", { "data-testid": "broadcast-result" }, result(b, members))] : null,
        notes && !b.failureCode ? [h("dt", {}, t("history.note")), h("dd", {}, notes)] : null),
      failure(b),
      stopButton(b, { me, live, box }),
      members.size
        ? overview.render(b, members)
        : b.failureCode ? null : h("p", {}, t("history.noAttempts")),
    );
  }

  function member(name, attempts) {
    const last = attempts[attempts.length - 1];
    return h("li", { class: "member", "data-member": name },
      h("h2", {}, name, last.memberExtension ? ` (${last.memberExtension})` : "",
        last.outcome ? h("span", { class: `outcome ${last.outcome.toLowerCase()}` }, t(`outcome.${last.outcome}`)) : null),
      h("ol", { class: "attempts" }, attempts.map((a) => a.outcome === "NOT_CALLED" ? notCalled(a) :
        h("li", {},
          h("span", { class: "attempt-no" }, t("history.attempt", { n: a.attemptNo })),
          a.lateReason ? h("p", { class: "late", "data-late": a.lateReason }, late(a)) : null,
          h("ul", { class: "steps" }, steps(a).map((s) =>
            h("li", {}, h("time", { datetime: a[s] }, time(a[s])), " ",
              s === "endedAt" && a.outcome ? `${t("step.endedAt")}: ${t(`outcome.${a.outcome}`)}` : t(`step.${s}`)))),
          a.detail ? h("p", { class: "detail", "data-detail": a.detail }, attemptDetail(a.detail)) : null))));
  }

  // Why an attempt began after the broadcast timeout: worded here from the code, with
  // the outage's times (issue 14, point 11).
  function late(a) {
    return t(`late.${a.lateReason}`, { from: dateTime(a.lateFrom), until: dateTime(a.lateUntil) });
  }

  // A member never called: the member's heading says so once; here only why, from the
  // late reason (the timeout) or the detail's code (quorumReached). An older agent's
  // English detail is not shown.
  function notCalled(a) {
    const why = a.lateReason
      ? t(`notCalled.${a.lateReason}`, { from: dateTime(a.lateFrom), until: dateTime(a.lateUntil) })
      : t(NOT_CALLED_CODES.has(a.detail) ? `notCalled.${a.detail}` : "notCalled.unknown");
    return h("li", { class: "not-called" },
      h("p", { class: "late", "data-late": a.lateReason || a.detail || "unknown" }, why));
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
