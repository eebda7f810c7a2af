// The customer's own view of their Rundruf Manager Service (part of Einstellungen): connected
// or since when not, and what it last reported; a silent one's values read "unbekannt seit …".

import { awayReason, onAgentChange } from "../agent.js";
import { gql } from "../api.js";
import { t } from "../i18n.js";
import { RUNS_ON_FIELDS, runsOn, simulatorLabel, sipRegistration } from "../installation.js";
import { age, h, messages, replace, section, showError, unknownSince, yesNo } from "../ui.js";

const STATUS = `{ agentConnection { state since installation { hostname agentVersion lastHeartbeatAt
  connected offlineSince participantCount pbxReachable jobserviceReachable alarmServiceOk journalWritable
  ${RUNS_ON_FIELDS} } } }`;
// Health values change without a state change (the PBX goes down): read them again now and then.
const REFRESH_MS = 10000;

function rows(agent) {
  const i = agent.installation;
  const value = (v) => (i.connected ? v : unknownSince(i.offlineSince));
  return [
    [t("monitoring.host"), [`${i.hostname}${i.agentVersion ? ` ${i.agentVersion}` : ""}`, simulatorLabel(i)]],
    [t("installation.runsOn"), runsOn(i)],
    [t("sip.title"), value(sipRegistration(i))],
    [t("monitoring.heartbeat"), i.lastHeartbeatAt ? age(i.lastHeartbeatAt) : t("monitoring.never")],
    [t("monitoring.pbx"), value(yesNo(i.pbxReachable))],
    [t("monitoring.jobservice"), value(yesNo(i.jobserviceReachable))],
    [t("monitoring.alarm"), value(yesNo(i.alarmServiceOk))],
    [t("monitoring.journal"), value(h("span", { "data-testid": "journal" }, yesNo(i.journalWritable)))],
    [t("monitoring.participants"), value(i.participantCount ?? "–")],
  ];
}

function show(view, agent) {
  const away = awayReason(agent);
  const state = away
    ? h("p", { class: "flag bad", "data-testid": "agent-state" }, `${t("agent.name")} ${away}`)
    : h("p", { class: "flag good", "data-testid": "agent-state" }, t("agent.connected"));
  const facts = agent.installation
    ? h("dl", { class: "facts" }, rows(agent).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))
    : null;
  replace(view, state, facts);
}

/** The section, kept current; returns it and a stop function for when the page is left. */
export function agentStatus() {
  const view = h("div", {}, h("p", {}, t("loading")));
  const box = messages();
  const load = () =>
    gql(STATUS).then(
      (d) => {
        box.replaceChildren();
        show(view, d.agentConnection);
      },
      (error) => showError(box, error),
    );
  load();
  const timer = setInterval(load, REFRESH_MS);
  const unwatch = onAgentChange(load);
  const stop = () => {
    clearInterval(timer);
    unwatch();
  };
  return { element: section(t("agent.title"), view, box), stop };
}
