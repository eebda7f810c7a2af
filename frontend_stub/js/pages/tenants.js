// Mandanten: list, create, deactivate.

import { gql } from "../api.js";
import { t } from "../i18n.js";
import { date, field, h, messages, replace, run, section, select, showError, showOk, table, yesNo } from "../ui.js";

const TENANTS = "{ tenants { id name language contactEmail active createdAt } }";
const CREATE = `mutation($input: TenantInput!) { createTenant(input: $input) { id name } }`;
const DEACTIVATE = "mutation($id: ID!) { deactivateTenant(id: $id) { id active } }";

export function render({ main }) {
  const box = messages();
  const view = h("div");
  replace(main, h("h1", {}, t("tenants.title")), view, createForm(), box);

  async function load() {
    try {
      const { tenants } = await gql(TENANTS);
      const rows = tenants.map((x) =>
        h("tr", {},
          h("td", {}, x.name),
          h("td", {}, t(`language.${x.language}`)),
          h("td", {}, x.contactEmail || "–"),
          h("td", {}, yesNo(x.active)),
          h("td", {}, date(x.createdAt)),
          h("td", {}, x.active ? h("button", { type: "button", class: "secondary",
            "aria-label": t("tenants.deactivateOne", { name: x.name }),
            onclick: (e) => run(e.currentTarget, box, t("loading"), () => gql(DEACTIVATE, { id: x.id })).then((ok) => ok && load()),
          }, t("tenants.deactivate")) : "")));
      replace(view, table([t("tenants.name"), t("tenants.language"), t("tenants.contact"), t("tenants.active"), "", ""], rows));
    } catch (error) {
      showError(box, error);
    }
  }

  function createForm() {
    const formBox = messages();
    const name = h("input", { name: "name", required: true });
    const language = select("language", [["DE", t("language.DE")], ["EN", t("language.EN")]], "DE");
    const contact = h("input", { name: "contactEmail", type: "email" });
    const submit = h("button", { type: "submit" }, t("tenants.create"));
    return section(t("tenants.new"), h("form", { onsubmit: async (event) => {
      event.preventDefault();
      const input = { name: name.value.trim(), language: language.value, contactEmail: contact.value.trim() || null };
      const done = await run(submit, formBox, t("loading"), () => gql(CREATE, { input }));
      if (done) {
        showOk(formBox, t("tenants.created", { name: done.createTenant.name }));
        name.value = contact.value = "";
        load();
      }
    } }, field(t("tenants.name"), name), field(t("tenants.language"), language), field(t("tenants.contact"), contact), submit, formBox));
  }

  load();
}
