// Stopping a running broadcast (issue 17, point 2): "Rundruf beenden" for tenant admins,
// after a confirmation, and who stopped a broadcast, how and when ("beendet von …").

import { gql } from "../api.js";
import { checkCommand, untilDone } from "../commands.js";
import { t } from "../i18n.js";
import { dateTime, field, h, run, showOk } from "../ui.js";

const CANCEL = "mutation($id: ID!, $r: String) { cancelBroadcast(id: $id, reason: $r) { id status } }";
export const STOP_FIELDS = "stoppedAt stoppedBy stoppedVia stopReason";
// The broadcast page also reads the agent number: the phone route of a stop.
export const STOP_ROUTE = "group { agentExtension }";

// Stops sent from this page that still wait, by broadcast id: ended when it no longer runs.
const waiting = new Map();

/**
 * Called with each state of the broadcast: once it no longer runs, a stop still waiting
 * for the agent is moot, and its message goes (it would say "läuft weiter" forever).
 */
export function settleStop(b) {
  if (b.status !== "RUNNING") waiting.get(b.id)?.abort();
}

/** The button on a running broadcast's page; null for viewers and finished broadcasts. */
export function stopButton(b, { me, live, box }) {
  if (b.status !== "RUNNING" || !me || me.role !== "TENANT_ADMIN") return null;
  return h("div", { class: "actions" }, h("button", {
    type: "button", class: "danger", "data-testid": "stop-broadcast",
    onclick: (event) => confirmStop(b, event.currentTarget, live, box),
  }, t("stop.button")));
}

// A modal dialog (Escape cancels, the safe choice has the focus) that says what a stop does.
function confirmStop(b, opener, live, box) {
  const reason = h("input", { name: "stop-reason", autocomplete: "off", maxlength: "500" });
  const go = h("button", { type: "submit", class: "danger" }, t("stop.confirm"));
  const cancel = h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, t("stop.keep"));
  const dialog = h("dialog", { class: "confirm", "aria-labelledby": "stop-title", "aria-describedby": "stop-what" },
    h("form", { method: "dialog", onsubmit: (event) => {
      event.preventDefault();
      dialog.close("go");
    } },
    h("h2", { id: "stop-title" }, t("stop.title")),
    h("p", { id: "stop-what", "data-testid": "stop-what" }, t("stop.what", { group: b.groupName })),
    field(t("stop.reason"), reason),
    h("div", { class: "actions" }, go, cancel)));
  dialog.addEventListener("close", async () => {
    dialog.remove();
    opener.focus();
    if (dialog.returnValue !== "go") return;
    const done = await run(opener, box, t("stop.sending"), (progress) =>
      send(b, live, progress, reason.value.trim() || null));
    if (done === "SUCCEEDED") showOk(box, t("stop.sent"));
  });
  window.addEventListener("hashchange", () => dialog.open && dialog.close(), { once: true });
  document.body.append(dialog);
  dialog.showModal();
  cancel.focus();
}

// Sends the stop and follows it. While the agent is away the broadcast goes on: the
// message says so and names the phone route, which works without this service.
async function send(b, live, progress, reason) {
  const number = b.group?.agentExtension || t("stop.groupNumber");
  const { cancelBroadcast: sent } = await gql(CANCEL, { id: b.id, r: reason });
  const controller = new AbortController();
  waiting.get(b.id)?.abort();
  waiting.set(b.id, controller);
  try {
    const last = await untilDone(sent, live, (c, away) => {
      if (away) progress(t("stop.waiting", { number }), { waiting: true });
      else if (c.status !== "SUCCEEDED") progress(t("stop.sending"));
    }, controller.signal);
    if (controller.signal.aborted) return "MOOT";
    if (last.status === "EXPIRED") throw new Error(t("stop.expired", { number }));
    return checkCommand(last).status;
  } finally {
    if (waiting.get(b.id) === controller) waiting.delete(b.id);
  }
}

/** "beendet von … (per Website) am …" for a stopped broadcast; null otherwise. */
export function stoppedFacts(b) {
  if (!b.stoppedAt) return null;
  const by = b.stoppedBy || t("stop.unknown");
  const text = t("stop.by", { by, via: t(`stop.via.${b.stoppedVia}`), at: dateTime(b.stoppedAt) });
  return [h("dt", {}, t("stop.stopped")),
    h("dd", { "data-testid": "stopped-by", "data-stopped-via": b.stoppedVia }, text,
      b.stopReason ? ` – ${t("stop.reasonShown", { reason: b.stopReason })}` : "")];
}
