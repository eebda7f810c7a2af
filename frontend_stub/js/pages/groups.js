// Gruppen: the PBX groups; one group's members, broadcast agent (number, PIN) and announcements.

import { gql } from "../api.js";
import { command } from "../commands.js";
import { t } from "../i18n.js";
import { field, h, messages, replace, run, section, select, showError, showOk, table } from "../ui.js";
import { renderAnnouncements } from "./announcements.js";
import { optionsSection, triggerSection } from "./broadcast_actions.js";

const GROUPS = "{ groups { id name description members { id } broadcast { extension } } }";
const GROUP = `query($id: ID!) { group(id: $id) { id name description
  members { id name extension }
  broadcast { name extension pin repetitions quorum
    announcements { id kind source status durationMs text language error updatedAt downloadUrl } } } }`;
const USERS = "{ pbxUsers { id name extension callroutingOnly } }";
const CREATE = "mutation($name: String!, $d: String) { createGroup(name: $name, description: $d) { id status } }";
const ADD = "mutation($g: ID!, $u: [ID!]!) { addGroupMembers(groupId: $g, userIds: $u) { id status } }";
const REMOVE = "mutation($g: ID!, $u: [ID!]!) { removeGroupMembers(groupId: $g, userIds: $u) { id status } }";
const ENABLE = "mutation($g: ID!) { enableBroadcast(groupId: $g) { id status } }";
const DISABLE = "mutation($g: ID!) { disableBroadcast(groupId: $g) { id status } }";
const AGENT = `mutation($g: ID!, $e: String, $p: String) {
  updateBroadcastAgent(groupId: $g, extension: $e, pin: $p) { id status } }`;

export function render(ctx) {
  const { main, live, params } = ctx;
  const container = h("div", {}, h("p", {}, t("loading")));
  main.append(container);
  const refresh = params[0] ? () => detail(ctx, container, params[0]) : () => list(ctx, container);
  refresh();
  // The directory changed on the PBX (through the agent): show it.
  const stop = live.subscribe("subscription { directoryChanged { at } }", {}, () => refresh());
  const stopReconnect = live.on("reconnect", refresh);
  return () => {
    stop();
    stopReconnect();
  };
}

async function list({ me, live }, container) {
  let groups;
  const box = messages();
  try {
    groups = (await gql(GROUPS)).groups;
  } catch (error) {
    showError(box, error);
    replace(container, h("h1", {}, t("groups.title")), box);
    return;
  }
  const rows = groups.map((g) =>
    h("tr", {},
      h("td", {}, h("a", { href: `#/groups/${g.id}` }, g.name)),
      h("td", { class: "num" }, g.members.length),
      h("td", {}, g.broadcast ? h("span", { class: "badge" }, g.broadcast.extension) : "")));
  replace(
    container,
    h("h1", {}, t("groups.title")),
    h("p", {}, groups.length ? t("groups.intro") : t("groups.empty")),
    groups.length ? table([t("groups.name"), t("groups.members"), t("groups.agentNumber")], rows) : null,
    me.role === "TENANT_ADMIN" ? createForm(live) : null,
    box,
  );
}

function createForm(live) {
  const box = messages();
  const name = h("input", { name: "name", required: true, maxlength: 128 });
  const description = h("input", { name: "description", maxlength: 256 });
  const submit = h("button", { type: "submit" }, t("groups.create"));
  return section(
    t("groups.new"),
    h("form", { onsubmit: async (event) => {
      event.preventDefault();
      const done = await run(submit, box, t("groups.creating"), (progress) =>
        command(live, progress, CREATE, { name: name.value.trim(), d: description.value.trim() || null }));
      if (done) {
        showOk(box, t("command.succeeded"));
        name.value = description.value = "";
      }
    } },
    field(t("groups.name"), name),
    field(t("groups.description"), description),
    submit,
    box),
  );
}

async function detail(ctx, container, id) {
  const { me, live } = ctx;
  const box = messages();
  let group, users;
  try {
    [{ group }, { pbxUsers: users }] = await Promise.all([gql(GROUP, { id }), gql(USERS)]);
  } catch (error) {
    showError(box, error);
    replace(container, h("p", {}, h("a", { href: "#/groups" }, `← ${t("groups.back")}`)), box);
    return;
  }
  const admin = me.role === "TENANT_ADMIN";
  const reload = () => detail(ctx, container, id);
  replace(
    container,
    h("p", {}, h("a", { href: "#/groups" }, `← ${t("groups.back")}`)),
    h("h1", {}, group.name),
    group.description ? h("p", {}, group.description) : null,
    broadcastSection(group, admin, live, reload),
    group.broadcast && admin ? triggerSection(group, live) : null,
    group.broadcast ? optionsSection(group, admin, live) : null,
    membersSection(group, users, admin, live, reload),
    group.broadcast ? renderAnnouncements(group, admin, live, reload) : null,
  );
}

function membersSection(group, users, admin, live, reload) {
  const box = messages();
  const rows = group.members.map((m) =>
    h("tr", {},
      h("td", {}, m.name),
      h("td", {}, m.extension || "–"),
      admin ? h("td", {}, h("button", {
        type: "button", class: "secondary", "aria-label": t("group.removeMember", { name: m.name }),
        onclick: (event) => run(event.currentTarget, box, t("group.working"), (progress) =>
          command(live, progress, REMOVE, { g: group.id, u: [m.id] })).then((ok) => ok && reload()),
      }, t("group.remove"))) : null));
  const memberIds = new Set(group.members.map((m) => m.id));
  const candidates = users.filter((u) => !u.callroutingOnly && !memberIds.has(u.id));
  const choice = select("user", [["", t("group.choose")], ...candidates.map((u) => [u.id, `${u.name}${u.extension ? ` (${u.extension})` : ""}`])]);
  const add = h("button", { type: "submit" }, t("group.add"));
  const form = admin && candidates.length
    ? h("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      if (!choice.value) return;
      const ok = await run(add, box, t("group.working"), (progress) =>
        command(live, progress, ADD, { g: group.id, u: [choice.value] }));
      if (ok) reload();
    } }, field(t("group.addMember"), choice), add)
    : null;
  return section(
    t("group.membersTitle"),
    group.members.length
      ? table([t("groups.name"), t("group.extension"), ...(admin ? [""] : [])], rows)
      : h("p", {}, t("group.noMembers")),
    form,
    box,
  );
}

function broadcastSection(group, admin, live, reload) {
  const box = messages();
  const b = group.broadcast;
  if (!b) {
    const convert = h("button", { type: "button", disabled: !admin, onclick: async () => {
      const ok = await run(convert, box, t("group.converting"), (progress) =>
        command(live, progress, ENABLE, { g: group.id }));
      if (ok) reload();
    } }, t("group.convert"));
    return section(t("group.agent"), h("p", {}, t("group.plain")), convert, box);
  }
  const facts = h("dl", { class: "facts" },
    h("dt", {}, t("group.agentName")), h("dd", {}, b.name),
    h("dt", {}, t("group.agentNumber")), h("dd", { "data-testid": "agent-number" }, b.extension),
    h("dt", {}, t("group.pin")), h("dd", { "data-testid": "agent-pin" }, b.pin ?? t("group.pinHidden")));
  const editBox = h("div");
  const edit = h("button", { type: "button", class: "secondary", disabled: !admin, "aria-expanded": "false", onclick: () => {
    const open = edit.getAttribute("aria-expanded") === "true";
    edit.setAttribute("aria-expanded", String(!open));
    replace(editBox, open ? null : editForm(group, live, box, reload));
  } }, t("group.edit"));
  const unconvert = h("button", { type: "button", class: "danger", disabled: !admin, onclick: async () => {
    if (!confirm(t("group.unconvertConfirm", { name: group.name }))) return;
    const ok = await run(unconvert, box, t("group.unconverting"), (progress) =>
      command(live, progress, DISABLE, { g: group.id }));
    if (ok) reload();
  } }, t("group.unconvert"));
  return section(t("group.agent"), facts, h("div", { class: "actions" }, edit, unconvert), editBox, box);
}

function editForm(group, live, box, reload) {
  const b = group.broadcast;
  const extension = h("input", { name: "extension", value: b.extension, inputmode: "numeric", required: true });
  const pin = h("input", { name: "pin", value: b.pin ?? "", inputmode: "numeric", autocomplete: "off" });
  const submit = h("button", { type: "submit" }, t("save"));
  return h("form", { onsubmit: async (event) => {
    event.preventDefault();
    const variables = { g: group.id, e: extension.value.trim() === b.extension ? null : extension.value.trim(),
      p: pin.value.trim() === (b.pin ?? "") ? null : pin.value.trim() };
    if (variables.e === null && variables.p === null) return;
    const ok = await run(submit, box, t("group.editing"), (progress) => command(live, progress, AGENT, variables));
    if (ok) reload();
  } }, field(t("group.agentNumber"), extension), field(t("group.pin"), pin), submit);
}
