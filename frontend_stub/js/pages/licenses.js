// Lizenzen: list, issue (the key is shown this once), revoke.

import { gql } from "../api.js";
import { t } from "../i18n.js";
import { date, field, h, messages, replace, run, section, select, showError, table } from "../ui.js";

const LICENSES = "{ tenants { id name active } licenses { id tenantId keyPrefix seats validUntil revokedAt createdAt } }";
const ISSUE = `mutation($t: ID!, $s: Int!, $v: DateTime!) {
  issueLicense(tenantId: $t, seats: $s, validUntil: $v) { key license { id keyPrefix } } }`;
const REVOKE = "mutation($id: ID!) { revokeLicense(id: $id) { id revokedAt } }";

export function render({ main }) {
  const box = messages();
  const view = h("div");
  const form = h("div");
  replace(main, h("h1", {}, t("licenses.title")), view, form, box);

  function state(l) {
    if (l.revokedAt) return h("span", { class: "flag bad" }, t("licenses.revoked"));
    if (new Date(l.validUntil) < new Date()) return h("span", { class: "flag bad" }, t("licenses.expired"));
    return h("span", { class: "flag good" }, t("licenses.valid"));
  }

  async function load() {
    try {
      const { tenants, licenses } = await gql(LICENSES);
      const names = Object.fromEntries(tenants.map((x) => [x.id, x.name]));
      const rows = licenses.map((l) =>
        h("tr", {},
          h("td", {}, names[l.tenantId] || "–"),
          h("td", {}, h("code", {}, `${l.keyPrefix}…`)),
          h("td", { class: "num" }, l.seats),
          h("td", {}, date(l.validUntil)),
          h("td", {}, state(l)),
          h("td", {}, l.revokedAt ? "" : h("button", { type: "button", class: "secondary",
            "aria-label": t("licenses.revokeOne", { prefix: l.keyPrefix }),
            onclick: (e) => confirm(t("licenses.revokeConfirm", { prefix: l.keyPrefix })) &&
              run(e.currentTarget, box, t("loading"), () => gql(REVOKE, { id: l.id })).then((ok) => ok && load()),
          }, t("licenses.revoke")))));
      replace(view, table([t("licenses.tenant"), t("licenses.prefix"), t("licenses.seats"), t("licenses.validUntil"), t("licenses.state"), ""], rows));
      replace(form, issueForm(tenants.filter((x) => x.active)));
    } catch (error) {
      showError(box, error);
    }
  }

  function issueForm(tenants) {
    const formBox = messages();
    const keyBox = h("div", { "aria-live": "polite", "data-key-box": "" });
    const tenant = select("tenantId", tenants.map((x) => [x.id, x.name]));
    const seats = h("input", { name: "seats", type: "number", min: 1, value: 50, required: true });
    const nextYear = new Date(Date.now() + 365 * 86400000).toISOString().slice(0, 10);
    const until = h("input", { name: "validUntil", type: "date", value: nextYear, required: true });
    const submit = h("button", { type: "submit" }, t("licenses.issue"));
    return section(t("licenses.new"), h("form", { onsubmit: async (event) => {
      event.preventDefault();
      const variables = { t: tenant.value, s: Number(seats.value), v: new Date(`${until.value}T23:59:59`).toISOString() };
      const done = await run(submit, formBox, t("loading"), () => gql(ISSUE, variables));
      if (!done) return;
      await load();
      // After load(): the form was drawn anew; show the key in the new one.
      const target = form.querySelector("[data-key-box]");
      replace(target, h("div", { class: "key-once", role: "status" },
        h("p", {}, t("licenses.keyOnce")),
        h("output", { class: "key", "data-testid": "license-key" }, done.issueLicense.key)));
    } }, field(t("licenses.tenant"), tenant), field(t("licenses.seats"), seats), field(t("licenses.validUntil"), until), submit, formBox, keyBox));
  }

  load();
}
