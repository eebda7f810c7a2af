// The tenant's Rundruf Manager Service (its agent): connected, or since when not.
// The server decides (agentConnectionChanged sends the state at once, on each report, and
// by itself when silence passes two poll intervals); the pages only show what it says.

import { t } from "./i18n.js";
import { at, since } from "./ui.js";

const CHANGED = "subscription { agentConnectionChanged { state since } }";

let current = null; // { state, since } once the server has answered
const listeners = new Set();

/** Follows the signed-in tenant's agent over the live connection; returns a stop function. */
export function watchAgent(live) {
  const stop = live.subscribe(CHANGED, {}, (data) => {
    current = data.agentConnectionChanged;
    for (const callback of [...listeners]) callback(current);
  });
  return () => {
    stop();
    current = null;
    for (const callback of [...listeners]) callback(null);
  };
}

/** Calls back with each new state (null: unknown, e.g. signed out); returns an unsubscribe. */
export function onAgentChange(callback) {
  listeners.add(callback);
  return () => listeners.delete(callback);
}

/** Why the agent is away, in words ("nicht verbunden seit …"); null while connected or unknown. */
export function awayReason(agent = current) {
  if (!agent || agent.state === "CONNECTED") return null;
  return t(`agent.${agent.state}`, { since: since(agent.since), at: at(agent.since) });
}

/** The banner's text: null while the agent is connected (or not known yet). */
export function bannerText(agent = current) {
  const reason = awayReason(agent);
  return reason ? t("agent.banner", { reason }) : null;
}

/** What an open change says while the agent is away: it waits, queued, instead of spinning. */
export function waitingText(agent = current) {
  const reason = awayReason(agent);
  return reason ? t("agent.waiting", { reason }) : null;
}
