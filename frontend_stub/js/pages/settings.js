// Einstellungen: PBX credentials with "anmelden" (verifyPbxCredentials), poll interval, timeout.

import { gql } from "../api.js";
import { checkCommand, commandProgress, untilDone } from "../commands.js";
import { t } from "../i18n.js";
import { agentStatus } from "./agent_status.js";
import { dateTime, field, h, messages, replace, run, section, showError, showOk } from "../ui.js";

const SETTINGS = `{ pbxSettings { host adminUser adminPasswordSet pollIntervalSeconds
  broadcastTimeoutSeconds verificationState verificationError verifiedAt } }`;
const UPDATE = `mutation($input: PbxSettingsInput!) { updatePbxSettings(input: $input) {
  settings { verificationState } command { id status } } }`;
const VERIFY = "mutation { verifyPbxCredentials { command { id status } } }";

function showState(el, s) {
  el.className = `state ${s.verificationState.toLowerCase()}`;
  replace(el, t("settings.state", { state: t(`settings.state.${s.verificationState}`) }),
    s.verifiedAt ? ` (${dateTime(s.verifiedAt)})` : "",
    s.verificationError ? h("span", { class: "detail" }, ` – ${s.verificationError}`) : "");
}

export function render({ main, me, live, go }) {
  const container = h("div", {}, h("h1", {}, t("settings.title")), h("p", {}, t("loading")));
  main.append(container);
  const status = agentStatus();
  load();

  async function load() {
    let s;
    try {
      s = (await gql(SETTINGS)).pbxSettings;
    } catch (error) {
      const box = messages();
      showError(box, error);
      container.replaceChildren(h("h1", {}, t("settings.title")), box);
      return;
    }
    const readOnly = me.role !== "TENANT_ADMIN";
    container.replaceChildren(h("h1", {}, t("settings.title")), credentials(s, readOnly), timing(s, readOnly),
      status.element);
  }

  function credentials(s, readOnly) {
    const box = messages();
    const host = h("input", { name: "host", value: s.host || "", required: true, autocomplete: "off" });
    const user = h("input", { name: "adminUser", value: s.adminUser || "", required: true, autocomplete: "off" });
    const password = h("input", {
      name: "adminPassword", type: "password", autocomplete: "new-password",
      required: !s.adminPasswordSet, placeholder: s.adminPasswordSet ? t("settings.passwordKept") : "",
    });
    const submit = h("button", { type: "submit", disabled: readOnly }, t("settings.verify"));
    const state = h("p", { "aria-live": "polite" });
    showState(state, s);
    const form = h("form", { onsubmit: async (event) => {
      event.preventDefault();
      const done = await run(submit, box, t("command.pending"), async (progress) => {
        const input = { host: host.value.trim(), adminUser: user.value.trim() };
        if (password.value) input.adminPassword = password.value;
        await gql(UPDATE, { input });
        progress(t("settings.verifying"));
        const { verifyPbxCredentials } = await gql(VERIFY);
        const command = await untilDone(verifyPbxCredentials.command, live, (c, waiting) => {
          if (waiting) progress(waiting, { waiting: true });
          else if (c.status === "PENDING" || c.status === "DELIVERED") progress(t("settings.verifying"));
        });
        return checkCommand(command);
      });
      gql(SETTINGS).then((d) => showState(state, d.pbxSettings), () => {});
      if (done) {
        showOk(box, t("settings.verified"));
        go("#/groups");
      }
    } },
    h("p", {}, t("settings.intro")),
    field(t("settings.host"), host),
    field(t("settings.adminUser"), user),
    field(t("settings.password"), password),
    state,
    submit,
    box);
    return section(t("settings.pbx"), form);
  }

  function timing(s, readOnly) {
    const box = messages();
    const poll = h("input", { name: "pollIntervalSeconds", type: "number", min: 5, max: 3600, step: 1, value: s.pollIntervalSeconds, required: true });
    const timeout = h("input", { name: "broadcastTimeoutSeconds", type: "number", min: 30, max: 3600, step: 1, value: s.broadcastTimeoutSeconds, required: true });
    const submit = h("button", { type: "submit", disabled: readOnly }, t("save"));
    const form = h("form", { onsubmit: async (event) => {
      event.preventDefault();
      const done = await run(submit, box, t("settings.saving"), async (progress) => {
        const input = { pollIntervalSeconds: Number(poll.value), broadcastTimeoutSeconds: Number(timeout.value) };
        const { updatePbxSettings } = await gql(UPDATE, { input });
        if (!updatePbxSettings.command) return true;
        return checkCommand(await untilDone(updatePbxSettings.command, live, commandProgress(progress)));
      });
      if (done) showOk(box, t("saved"));
    } },
    field(t("settings.poll"), poll),
    field(t("settings.timeout"), timeout),
    submit,
    box);
    return section(t("settings.timing"), form);
  }

  return status.stop;
}
