// Benutzer: every user of the platform and the tenants; create, deactivate.

import { gql } from "../api.js";
import { t } from "../i18n.js";
import { dateTime, field, h, messages, replace, run, section, select, showError, showOk, table, yesNo } from "../ui.js";

const USERS = "{ tenants { id name } users { id email name role language active tenantId lastLoginAt } }";
const CREATE = "mutation($input: UserInput!) { createUser(input: $input) { id email } }";
const DEACTIVATE = "mutation($id: ID!) { deactivateUser(id: $id) { id active } }";
const ROLES = ["TENANT_ADMIN", "TENANT_VIEWER", "PLATFORM_ADMIN"];

export function render({ main, me }) {
  const box = messages();
  const view = h("div");
  const form = h("div");
  replace(main, h("h1", {}, t("users.title")), view, form, box);

  async function load() {
    try {
      const { tenants, users } = await gql(USERS);
      const names = Object.fromEntries(tenants.map((x) => [x.id, x.name]));
      const rows = users.map((u) =>
        h("tr", {},
          h("td", {}, u.email),
          h("td", {}, u.name),
          h("td", {}, t(`role.${u.role}`)),
          h("td", {}, u.tenantId ? names[u.tenantId] || "–" : "agenos"),
          h("td", {}, yesNo(u.active)),
          h("td", {}, dateTime(u.lastLoginAt)),
          h("td", {}, u.active && u.id !== me.id ? h("button", { type: "button", class: "secondary",
            "aria-label": t("users.deactivateOne", { name: u.email }),
            onclick: (e) => run(e.currentTarget, box, t("loading"), () => gql(DEACTIVATE, { id: u.id })).then((ok) => ok && load()),
          }, t("users.deactivate")) : "")));
      replace(view, table([t("users.email"), t("users.name"), t("users.role"), t("users.tenant"), t("tenants.active"), t("users.lastLogin"), ""], rows));
      if (!form.firstChild) replace(form, createForm(tenants));
    } catch (error) {
      showError(box, error);
    }
  }

  function createForm(tenants) {
    const formBox = messages();
    const email = h("input", { name: "email", type: "email", required: true, autocomplete: "off" });
    const name = h("input", { name: "name", required: true });
    const role = select("role", ROLES.map((r) => [r, t(`role.${r}`)]), "TENANT_ADMIN");
    const tenant = select("tenantId", [["", t("users.platform")], ...tenants.map((x) => [x.id, x.name])], tenants[0]?.id ?? "");
    const password = h("input", { name: "password", type: "password", required: true, autocomplete: "new-password" });
    const language = select("language", [["DE", t("language.DE")], ["EN", t("language.EN")]], "DE");
    const submit = h("button", { type: "submit" }, t("users.create"));
    return section(t("users.new"), h("form", { onsubmit: async (event) => {
      event.preventDefault();
      const input = { email: email.value.trim(), name: name.value.trim(), role: role.value,
        password: password.value, tenantId: tenant.value || null, language: language.value };
      const done = await run(submit, formBox, t("loading"), () => gql(CREATE, { input }));
      if (done) {
        showOk(formBox, t("users.created", { email: done.createUser.email }));
        email.value = name.value = password.value = "";
        load();
      }
    } }, field(t("users.email"), email), field(t("users.name"), name), field(t("users.role"), role),
    field(t("users.tenant"), tenant), field(t("users.password"), password), field(t("users.language"), language), submit, formBox));
  }

  load();
}
