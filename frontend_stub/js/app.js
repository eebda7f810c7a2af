// The app shell: session, navigation by location hash, language switch, live connection.

import { bannerText, onAgentChange, watchAgent } from "./agent.js";
import { gql, whenSignedOut } from "./api.js";
import { language, setLanguage, t } from "./i18n.js";
import { h, replace } from "./ui.js";
import { LiveClient } from "./ws.js";
import * as audit from "./pages/audit.js";
import * as groups from "./pages/groups.js";
import * as history from "./pages/history.js";
import * as licenses from "./pages/licenses.js";
import * as login from "./pages/login.js";
import * as monitoring from "./pages/monitoring.js";
import * as settings from "./pages/settings.js";
import * as tenants from "./pages/tenants.js";
import * as users from "./pages/users.js";

const PLATFORM_PAGES = { monitoring, tenants, licenses, users, audit };
const TENANT_PAGES = { groups, history, settings, audit };
const PLATFORM_NAV = ["monitoring", "tenants", "licenses", "users", "audit"];
const TENANT_NAV = ["groups", "history", "settings", "audit"];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const banner = document.getElementById("connection");
const agentBanner = document.getElementById("agent");
const languageButton = document.getElementById("language");
const logoutButton = document.getElementById("logout");

let me = null;
let live = null;
let cleanup = null;
let unwatchAgent = null;

const ME = "{ me { id email name role tenantId language } }";

async function start() {
  try {
    me = (await gql(ME)).me;
  } catch {
    me = null;
  }
  render();
}

/** Where a user lands: platform admins on monitoring, customers on Gruppen once the PBX is set up. */
export async function home(user = me) {
  if (user.role === "PLATFORM_ADMIN") return "#/monitoring";
  try {
    const { pbxSettings } = await gql("{ pbxSettings { verificationState } }");
    return pbxSettings.verificationState === "VERIFIED" ? "#/groups" : "#/settings";
  } catch {
    return "#/groups"; // the page itself shows what went wrong
  }
}

export async function signedIn(user) {
  me = user;
  connectLive();
  const target = await home(user);
  if (location.hash === target) render();
  else location.hash = target; // hashchange renders
}

function connectLive() {
  if (live) return;
  live = new LiveClient();
  live.on("state", (state) => {
    banner.hidden = state === "open";
    banner.textContent = state === "open" ? "" : t(`live.${state}`);
  });
  // The server ended the session (signed out elsewhere, password changed): the
  // sign-in page, as for a refused request, instead of reconnecting in vain.
  live.on("signedOut", () => {
    if (me) signOutLocally();
  });
  // Customers see on every page when their Rundruf Manager Service is away.
  if (me && me.role !== "PLATFORM_ADMIN") unwatchAgent = watchAgent(live);
}

function showAgent() {
  const text = me ? bannerText() : null;
  agentBanner.hidden = !text;
  agentBanner.textContent = text || "";
}
onAgentChange(showAgent);

function signOutLocally() {
  me = null;
  if (unwatchAgent) unwatchAgent();
  unwatchAgent = null;
  if (live) live.close();
  live = null;
  banner.hidden = true;
  render();
}

whenSignedOut(() => {
  if (me) signOutLocally();
});

function route() {
  const [name = "", ...params] = location.hash.replace(/^#\/?/, "").split("/");
  return { name, params: params.map(decodeURIComponent) };
}

async function render() {
  if (cleanup) cleanup();
  cleanup = null;
  languageButton.textContent = t("language.switch");
  languageButton.setAttribute("lang", language() === "de" ? "en" : "de");
  nav.setAttribute("aria-label", t("nav.label"));
  logoutButton.textContent = t("logout");
  logoutButton.hidden = !me;
  if (!me) {
    replace(nav);
    cleanup = login.render({ main, signedIn });
    document.title = `${t("login.title")} – Rundruf`;
    return;
  }
  connectLive();
  const pages = me.role === "PLATFORM_ADMIN" ? PLATFORM_PAGES : TENANT_PAGES;
  // The audit log (Protokoll) is for administrators; viewers are refused it.
  const order = (me.role === "PLATFORM_ADMIN" ? PLATFORM_NAV : TENANT_NAV)
    .filter((key) => key !== "audit" || me.role !== "TENANT_VIEWER");
  const { name, params } = route();
  if (!pages[name]) {
    location.hash = await home();
    return;
  }
  replace(
    nav,
    h(
      "ul",
      {},
      order.map((key) =>
        h("li", {}, h("a", { href: `#/${key}`, "aria-current": key === name ? "page" : null }, t(`nav.${key}`))),
      ),
    ),
  );
  document.title = `${t(`nav.${name}`)} – Rundruf`;
  replace(main);
  cleanup = pages[name].render({ main, me, live, params, go: (hash) => (location.hash = hash) }) || null;
}

languageButton.addEventListener("click", () => {
  setLanguage(language() === "de" ? "en" : "de");
  showAgent();
  render();
});

logoutButton.addEventListener("click", async () => {
  try {
    await gql("mutation { logout }");
  } finally {
    location.hash = "";
    signOutLocally();
  }
});

window.addEventListener("hashchange", async () => {
  await render();
  // Screen readers start reading the new page, not somewhere in the old one.
  main.focus({ preventScroll: true });
});
start();
