// On a broadcast group's page (issue 17, points 1 and 6): start a test call or an alarm
// (tenant admins, after a confirmation that names what happens), and edit quorum and
// repetitions with their effect said in a sentence.

import { command } from "../commands.js";
import { t } from "../i18n.js";
import { field, h, messages, replace, run, section, select, showOk } from "../ui.js";

const TRIGGER = "mutation($g: ID!, $m: BroadcastMode!) { triggerBroadcast(groupId: $g, mode: $m) { id status } }";
const OPTIONS = `mutation($g: ID!, $q: Int, $r: Int!) {
  updateBroadcastOptions(groupId: $g, quorum: $q, repetitions: $r) { id status } }`;
const QUORUM_MAX = 1000; // as api/services/broadcast_control.py
const REPETITIONS_MAX = 5;

/** "Rundruf auslösen": the two buttons, and why mode 3 is not among them. */
export function triggerSection(group, live) {
  const box = messages();
  const n = group.members.length;
  const button = (mode) => h("button", {
    type: "button", class: mode === "ALARM" ? "" : "secondary", disabled: !n, "data-mode": mode,
    onclick: (event) => confirmTrigger(group, mode, event.currentTarget, live, box),
  }, t(mode === "ALARM" ? "trigger.alarm" : "trigger.test"));
  return section(
    t("trigger.title"),
    h("div", { class: "actions" }, button("TEST"), button("ALARM")),
    n ? null : h("p", { class: "hint" }, t("trigger.noMembers")),
    h("p", { class: "hint", "data-testid": "recorded-by-phone" }, t("trigger.recordedByPhone", { number: group.broadcast.extension })),
    box,
  );
}

// A modal dialog (focus moves into it, Escape cancels) naming group, mode and members; an
// alarm starts only once the group's name is typed, so a slip cannot start one.
function confirmTrigger(group, mode, opener, live, box) {
  const alarm = mode === "ALARM";
  const typed = h("input", { name: "confirm-name", autocomplete: "off", spellcheck: "false" });
  const go = h("button", { type: "submit", disabled: alarm }, t(`trigger.confirm.${mode}`));
  const cancel = h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, t("trigger.cancel"));
  typed.addEventListener("input", () => {
    go.disabled = typed.value.trim() !== group.name;
  });
  const dialog = h("dialog", { class: "confirm", "aria-labelledby": "trigger-title", "aria-describedby": "trigger-what" },
    h("form", { method: "dialog", onsubmit: (event) => {
      event.preventDefault();
      if (go.disabled) return;
      dialog.close("go");
    } },
    h("h2", { id: "trigger-title" }, t(`trigger.confirmTitle.${mode}`)),
    h("p", { id: "trigger-what", "data-testid": "trigger-what" },
      t("trigger.what", { group: group.name, mode: t(`mode.${mode}`), n: group.members.length })),
    h("p", {}, t(alarm ? "trigger.alarmNote" : "trigger.testNote")),
    alarm ? field(t("trigger.typeName", { group: group.name }), typed) : null,
    h("div", { class: "actions" }, go, cancel)));
  dialog.addEventListener("close", async () => {
    dialog.remove();
    opener.focus();
    if (dialog.returnValue !== "go") return;
    const done = await run(opener, box, t("trigger.sending"), (progress) =>
      command(live, progress, TRIGGER, { g: group.id, m: mode }));
    if (done) {
      showOk(box, t("trigger.started"));
      box.firstChild.append(" ", h("a", { href: "#/history" }, t("trigger.follow")));
    }
  });
  // Leaving the page cancels it: the dialog lives outside the page's own element.
  window.addEventListener("hashchange", () => dialog.open && dialog.close(), { once: true });
  document.body.append(dialog);
  dialog.showModal();
  (alarm ? typed : cancel).focus(); // the safe choice first
}

/** Quorum and repetitions, with what they do in a sentence that follows the inputs. */
export function optionsSection(group, admin, live) {
  const b = group.broadcast;
  const box = messages();
  const quorum = h("input", {
    name: "quorum", type: "number", min: "1", max: String(QUORUM_MAX), inputmode: "numeric",
    value: b.quorum ?? "", disabled: !admin,
  });
  const range = Array.from({ length: REPETITIONS_MAX }, (_, i) => [String(i + 1), String(i + 1)]);
  const repetitions = select("repetitions", range, String(b.repetitions), { disabled: !admin });
  const effect = h("p", { class: "effect", "data-testid": "options-effect", "aria-live": "polite" });
  const explain = () => {
    const q = Number.parseInt(quorum.value, 10);
    replace(effect,
      q >= 1 ? t("options.quorumEffect", { n: q }) : t("options.allEffect"), " ",
      t("options.repetitionsEffect", { n: repetitions.value }));
  };
  quorum.addEventListener("input", explain);
  repetitions.addEventListener("change", explain);
  explain();
  const submit = h("button", { type: "submit", disabled: !admin }, t("options.save"));
  return section(
    t("options.title"),
    h("form", { class: "options", onsubmit: async (event) => {
      event.preventDefault();
      const q = quorum.value.trim() === "" ? null : Number.parseInt(quorum.value, 10);
      const ok = await run(submit, box, t("options.saving"), (progress) =>
        command(live, progress, OPTIONS, { g: group.id, q, r: Number(repetitions.value) }));
      // The central row changed at once; the page stays as it is, saying so.
      if (ok) showOk(box, t("saved"));
    } },
    field(t("options.quorum"), quorum, t("options.quorumHint")),
    field(t("options.repetitions"), repetitions),
    effect,
    admin ? submit : null),
    box,
  );
}
