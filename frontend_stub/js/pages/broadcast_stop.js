// Stopping a running broadcast (issue 17, point 2): "Rundruf beenden" for tenant admins,
// after a confirmation, and who stopped a broadcast, how and when ("beendet von …").

import { command } from "../commands.js";
import { t } from "../i18n.js";
import { dateTime, field, h, run, showOk } from "../ui.js";

const CANCEL = "mutation($id: ID!, $r: String) { cancelBroadcast(id: $id, reason: $r) { id status } }";
export const STOP_FIELDS = "stoppedAt stoppedBy stoppedVia stopReason";

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
      command(live, progress, CANCEL, { id: b.id, r: reason.value.trim() || null }));
    if (done) showOk(box, t("stop.sent"));
  });
  window.addEventListener("hashchange", () => dialog.open && dialog.close(), { once: true });
  document.body.append(dialog);
  dialog.showModal();
  cancel.focus();
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
