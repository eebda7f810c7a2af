// Überwachung: every installation with what its agent last reported and the open incidents.
// The schema has no subscription for heartbeats, so the table is read again every few
// seconds, and the heartbeat's age counts up in between.

import { gql } from "../api.js";
import { t } from "../i18n.js";
import { RUNS_ON_FIELDS, runsOn, simulatorLabel, sipRegistration } from "../installation.js";
import { age, h, messages, replace, showError, table, time, unknownSince, yesNo } from "../ui.js";

const INSTALLATIONS = `{ tenants { id name }
  installations { id tenantId hostname agentVersion lastHeartbeatAt connected offlineSince
    participantCount pbxReachable jobserviceReachable alarmServiceOk journalWritable revokedAt ${RUNS_ON_FIELDS}
    openIncidents { id kind openedAt } } }`;
const REFRESH_MS = 5000;

// Calls go on from memory while the journal cannot be written: a warning beside the service.
function journalProblem(i) {
  if (i.journalWritable !== false) return [];
  return [h("br"), h("span", { class: "flag bad", "data-testid": "journal" }, t("monitoring.journalNotWritable"))];
}

export function render({ main }) {
  const box = messages();
  const view = h("div");
  const stamp = h("p", { class: "muted", role: "status" });
  replace(main, h("h1", {}, t("monitoring.title")), h("p", {}, t("monitoring.intro")), stamp, view, box);
  let data = null;

  function heartbeat(i) {
    if (i.revokedAt) return h("span", { class: "flag bad" }, t("monitoring.revoked"));
    if (!i.lastHeartbeatAt) return h("span", { class: "flag unknown" }, t("monitoring.never"));
    return h("time", { datetime: i.lastHeartbeatAt, class: i.connected ? "age" : "age flag bad" }, age(i.lastHeartbeatAt));
  }

  function show() {
    if (!data) return;
    const names = Object.fromEntries(data.tenants.map((x) => [x.id, x.name]));
    const rows = data.installations.map((i) =>
      h("tr", { "data-installation": i.id },
        h("td", {}, names[i.tenantId] || "–"),
        h("td", {}, i.hostname, i.agentVersion ? h("small", { class: "muted" }, ` ${i.agentVersion}`) : null,
          simulatorLabel(i), h("br"), h("small", { class: "muted" }, runsOn(i))),
        h("td", { "data-testid": "heartbeat" }, heartbeat(i)),
        // A silent agent's values are unknown since its last report, not its last green.
        h("td", { class: "num" }, i.connected ? i.participantCount ?? "–" : unknownSince(i.offlineSince)),
        h("td", {}, i.connected ? yesNo(i.pbxReachable) : unknownSince(i.offlineSince)),
        h("td", {}, i.connected ? yesNo(i.jobserviceReachable) : unknownSince(i.offlineSince)),
        h("td", {}, i.connected ? [yesNo(i.alarmServiceOk), ...journalProblem(i)] : unknownSince(i.offlineSince)),
        h("td", {}, i.connected ? sipRegistration(i) : unknownSince(i.offlineSince)),
        h("td", {}, i.openIncidents.length
          ? h("ul", { class: "incidents" }, i.openIncidents.map((x) => h("li", { class: "flag bad" }, t(`incident.${x.kind}`))))
          : t("none"))));
    const headers = ["tenant", "host", "heartbeat", "participants", "pbx", "jobservice", "alarm", "sip", "incidents"];
    replace(view, data.installations.length
      ? table(headers.map((k) => t(`monitoring.${k}`)), rows)
      : h("p", {}, t("monitoring.empty")));
  }

  async function load() {
    try {
      data = await gql(INSTALLATIONS);
      stamp.textContent = t("monitoring.updated", { time: time(new Date().toISOString()) });
      box.replaceChildren();
      show();
    } catch (error) {
      showError(box, error);
    }
  }

  load();
  const reader = setInterval(load, REFRESH_MS);
  const ticker = setInterval(() => {
    for (const el of view.querySelectorAll("time.age")) el.textContent = age(el.getAttribute("datetime"));
  }, 1000);
  return () => {
    clearInterval(reader);
    clearInterval(ticker);
  };
}
