// What an installation runs on (PBX adapter, dialer) and its SIP registration, in words,
// and the "Simulator" label: shared by Überwachung and the customer's Einstellungen.
// The fields come from Installation: pbxAdapter dialer simulated
// sipRegistration { state since lastError { code params detail at } }.

import { t } from "./i18n.js";
import { at, h, since } from "./ui.js";

/** The fields to ask for with an installation. */
export const RUNS_ON_FIELDS = `pbxAdapter dialer simulated
  sipRegistration { state since lastError { code params detail at } }`;

/** "Simulator" for an installation on the SwyxWare simulator or simulated calls; else null. */
export function simulatorLabel(i) {
  if (!i.simulated) return null;
  return h("span", { class: "badge simulator", "data-testid": "simulator", title: t("installation.simulator.hint") },
    t("installation.simulator"));
}

/** "SwyxWare · SIP", "SwyxWare-Simulator · simulierte Anrufe"; "–" from an agent that does not say. */
export function runsOn(i) {
  const parts = [
    i.pbxAdapter ? t(`installation.pbx.${i.pbxAdapter}`) : null,
    i.dialer ? t(`installation.dialer.${i.dialer}`) : null,
  ].filter(Boolean);
  return h("span", { "data-testid": "runs-on" }, parts.length ? parts.join(" · ") : "–");
}

/** The error's code in words, with its parameters ("lehnt die Anmeldung ab (403 Forbidden)"). */
export function sipErrorText(error) {
  const key = `sip.error.${error.code}`;
  const words = t(key, { ...error.params, code: error.code });
  return words === key ? t("sip.error.other", { code: error.code }) : words.replace(" )", ")");
}

const STATE_CLASS = { REGISTERED: "good", FAILED: "bad", REGISTERING: "unknown", DISABLED: "unknown" };

/** The registration's state since when, and why it failed (or the last error, muted). */
export function sipRegistration(i) {
  const r = i.sipRegistration;
  if (!r) {
    const none = i.dialer === "SIM" ? t("sip.notApplicable") : "–";
    return h("span", { "data-testid": "sip-registration" }, none);
  }
  const state = h("span", { class: `flag ${STATE_CLASS[r.state] || "unknown"}` },
    t(`sip.state.${r.state}`, { since: since(r.since) }));
  const error = r.lastError;
  let why = null;
  if (error && r.state === "FAILED") {
    why = h("span", { class: "detail", title: error.detail || "" }, ` – ${sipErrorText(error)}`);
  } else if (error && r.state !== "DISABLED") {
    why = h("small", { class: "muted", title: error.detail || "" },
      ` (${t("sip.lastError", { at: at(error.at), error: sipErrorText(error) })})`);
  }
  return h("span", { "data-testid": "sip-registration" }, state, why);
}
