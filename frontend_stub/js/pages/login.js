// Login: e-mail and password; the server sets the session cookie.

import { gql } from "../api.js";
import { t } from "../i18n.js";
import { field, h, messages, replace, run } from "../ui.js";

const LOGIN = `mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { user { id email name role tenantId language } } }`;

export function render({ main, signedIn }) {
  const box = messages();
  const email = h("input", { name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit" }, t("login.submit"));
  const form = h(
    "form",
    { class: "card narrow", onsubmit: async (event) => {
      event.preventDefault();
      const result = await run(submit, box, t("login.busy"), () =>
        gql(LOGIN, { email: email.value.trim(), password: password.value }),
      { login: true });
      if (result) await signedIn(result.login.user);
    } },
    h("h1", {}, t("login.title")),
    field(t("login.email"), email),
    field(t("login.password"), password),
    submit,
    box,
  );
  replace(main, form);
  email.focus();
}
