// The live overview of one broadcast (issue 17, point 3): counters, a progress bar towards
// the quorum or all members, the times that matter, and the members in a compact table
// grouped and filterable by their state, each row opening to its steps.
//
// history.js renders it on every live event; the filter and the open rows live here so a
// re-render keeps them.

import { t } from "../i18n.js";
import { dateTime, h, replace } from "../ui.js";

// A member's state now, from its attempts; the table groups in this order.
const STATES = ["confirmed", "answered", "ringing", "calling", "busy", "notReached", "skipped", "notCalled"];
const COUNTERS = ["called", "ringing", "answered", "confirmed", "busy", "notReached", "skipped"];

export function memberState(attempts) {
  if (attempts.some((a) => a.outcome === "CONFIRMED" || a.confirmedAt)) return "confirmed";
  const last = attempts[attempts.length - 1];
  if (!last.outcome) {
    if (last.answeredAt) return "answered";
    return last.ringingAt ? "ringing" : "calling";
  }
  if (last.outcome === "SKIPPED_BUSY") return "skipped";
  if (last.outcome === "NOT_CALLED") return "notCalled";
  if (last.outcome === "BUSY") return "busy";
  return last.outcome === "ANSWERED" ? "answered" : "notReached";
}

/** The counters: members (not attempts) in each state; called and answered count everyone
 * who got that far, whatever came after. */
export function counts(members) {
  const c = Object.fromEntries(COUNTERS.map((k) => [k, 0]));
  for (const attempts of members.values()) {
    const state = memberState(attempts);
    if (attempts.some((a) => a.startedAt && a.outcome !== "NOT_CALLED" && a.outcome !== "SKIPPED_BUSY")) c.called += 1;
    if (attempts.some((a) => a.answeredAt)) c.answered += 1;
    if (state in c && state !== "answered") c[state] += 1;
  }
  return c;
}

// "1:05" or "1:02:05" from milliseconds.
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
}

const since = (from, to) => duration(Date.parse(to) - Date.parse(from));

/** createOverview(renderSteps): renderSteps(name, attempts) is history's member timeline. */
export function createOverview(renderSteps) {
  let filter = "all";
  const open = new Set();
  let timer = null;

  function render(b, members) {
    const root = h("section", { class: "overview", "aria-labelledby": "overview-title" });
    const c = counts(members);
    const goal = b.quorum || b.memberCount;
    const confirmed = c.confirmed;
    const percent = goal ? Math.min(100, Math.round((confirmed / goal) * 100)) : 0;
    const goalText = t(b.quorum ? "overview.towardsQuorum" : "overview.towardsAll", { n: confirmed, goal });
    const confirmedTimes = [...members.values()].flat().map((a) => a.confirmedAt).filter(Boolean).sort();
    const round = Math.max(0, ...[...members.values()].flat().map((a) => a.attemptNo));
    const running = b.status === "RUNNING";
    // Through the CSSOM: the policy (style-src 'self') refuses style attributes.
    const fill = h("span", { class: "progress-fill" });
    fill.style.width = `${percent}%`;
    const elapsed = h("dd", { "data-testid": "overview-elapsed" },
      since(b.startedAt, b.finishedAt || new Date().toISOString()));

    clearInterval(timer);
    if (running) {
      // The elapsed time counts on between events; a re-render or leaving the page ends it.
      timer = setInterval(() => {
        if (!elapsed.isConnected) return clearInterval(timer);
        elapsed.textContent = since(b.startedAt, new Date().toISOString());
      }, 1000);
    }

    replace(root,
      h("h2", { id: "overview-title" }, t("overview.title")),
      h("ul", { class: "counters", "aria-label": t("overview.countersLabel") },
        COUNTERS.map((k) => h("li", { class: `counter ${k}`, "data-counter": k },
          h("span", { class: "count" }, c[k]), " ", h("span", { class: "counter-label" }, t(`overview.count.${k}`))))),
      h("div", { class: "progress-wrap" },
        h("div", {
          class: "progress-bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(goal),
          "aria-valuenow": String(Math.min(confirmed, goal)), "aria-valuetext": goalText,
          "aria-labelledby": "overview-goal", "data-testid": "overview-progress",
        }, fill),
        h("p", { id: "overview-goal", class: "progress-text" }, goalText)),
      h("dl", { class: "overview-times" },
        h("dt", {}, t("overview.start")), h("dd", {}, dateTime(b.startedAt)),
        h("dt", {}, t("overview.end")), h("dd", {}, b.finishedAt ? dateTime(b.finishedAt) : t("overview.notYet")),
        h("dt", {}, t(running ? "overview.elapsed" : "overview.duration")), elapsed,
        h("dt", {}, t("overview.round")), h("dd", { "data-testid": "overview-round" }, round ? t("overview.roundN", { n: round }) : "–"),
        h("dt", {}, t("overview.firstConfirmation")),
        h("dd", { "data-testid": "overview-first" }, confirmedTimes.length ? since(b.startedAt, confirmedTimes[0]) : "–"),
        b.quorum ? [h("dt", {}, t("overview.quorumAfter")),
          h("dd", { "data-testid": "overview-quorum" }, b.quorumReachedAt ? since(b.startedAt, b.quorumReachedAt) : "–")] : null),
      memberTable(members),
    );
    return root;
  }

  function memberTable(members) {
    const byState = new Map(STATES.map((s) => [s, []]));
    for (const [name, attempts] of members) byState.get(memberState(attempts)).push([name, attempts]);
    const body = h("tbody");
    const wrap = h("div", { class: "member-table" });
    const filters = h("div", { class: "filters", role: "group", "aria-label": t("overview.filterLabel") },
      [["all", members.size], ...STATES.map((s) => [s, byState.get(s).length]).filter(([, n]) => n)].map(([s, n]) =>
        h("button", {
          type: "button", class: "filter", "aria-pressed": String(filter === s), "data-filter": s,
          onclick: () => {
            filter = s;
            for (const b of filters.children) b.setAttribute("aria-pressed", String(b.dataset.filter === s));
            fill();
          },
        }, `${t(s === "all" ? "overview.all" : `overview.state.${s}`)} (${n})`)));

    function fill() {
      const rows = [];
      for (const [state, list] of byState) {
        if (!list.length || (filter !== "all" && filter !== state)) continue;
        rows.push(h("tr", { class: "state-row" }, h("th", { colspan: "4", scope: "colgroup" },
          `${t(`overview.state.${state}`)} (${list.length})`)));
        for (const [name, attempts] of list) rows.push(...memberRows(name, attempts, state));
      }
      replace(body, rows);
    }

    let rowIds = 0;

    function memberRows(name, attempts, state) {
      const last = attempts[attempts.length - 1];
      const id = `steps-${++rowIds}`;
      const detail = h("tr", { class: "steps-row", id, hidden: !open.has(name) },
        h("td", { colspan: "4" }, h("ol", { class: "timeline" }, renderSteps(name, attempts))));
      const toggle = h("button", {
        type: "button", class: "link", "aria-expanded": String(open.has(name)), "aria-controls": id,
        onclick: () => {
          const now = !open.has(name);
          if (now) open.add(name);
          else open.delete(name);
          toggle.setAttribute("aria-expanded", String(now));
          detail.hidden = !now;
        },
      }, name);
      const latest = [...attempts].flatMap((a) => ["startedAt", "ringingAt", "answeredAt", "confirmedAt", "endedAt"]
        .map((s) => a[s])).filter(Boolean).sort().pop();
      return [
        h("tr", { class: "member-row", "data-row-member": name, "data-state": state },
          h("td", {}, toggle, last.memberExtension ? h("span", { class: "muted" }, ` ${last.memberExtension}`) : ""),
          h("td", {}, h("span", { class: `state ${state}` }, t(`overview.state.${state}`))),
          h("td", { class: "num" }, attempts.filter((a) => a.outcome !== "NOT_CALLED").length),
          h("td", { class: "when" }, latest ? dateTime(latest) : "–")),
        detail,
      ];
    }

    fill();
    replace(wrap, filters, h("div", { class: "table-wrap" }, h("table", { class: "compact" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, t("overview.member")), h("th", { scope: "col" }, t("overview.stateTitle")),
        h("th", { scope: "col", class: "num" }, t("overview.attempts")), h("th", { scope: "col", class: "when" }, t("overview.last")))),
      body)));
    return wrap;
  }

  return { render };
}
