// Ansagen of a broadcast group: upload a WAV file or type text for text-to-speech; listen to it.

import { gql, uploadAudio } from "../api.js";
import { checkCommand, commandProgress, untilDone } from "../commands.js";
import { t } from "../i18n.js";
import { field, h, messages, run, section, select, showOk } from "../ui.js";

const SET = `mutation($g: ID!, $k: AnnouncementKind!, $u: ID!) {
  setAnnouncement(groupId: $g, kind: $k, uploadId: $u) { announcement { id status } command { id status } } }`;
const SYNTHESIZE = `mutation($g: ID!, $k: AnnouncementKind!, $text: String!, $lang: Language!) {
  synthesizeAnnouncement(groupId: $g, kind: $k, text: $text, language: $lang) {
    announcement { id status } command { id status } } }`;
const STATES = "query($id: ID!) { group(id: $id) { broadcast { announcements { id kind status } } } }";
const PENDING_POLL_MS = 3000;

export function renderAnnouncements(group, admin, live, reload) {
  const byKind = Object.fromEntries(group.broadcast.announcements.map((a) => [a.kind, a]));
  const el = section(
    t("ann.title"),
    ["TEST", "ALARM"].map((kind) => one(group, kind, byKind[kind], admin, live, reload)),
  );
  if (group.broadcast.announcements.some((a) => a.status === "PENDING")) watchPending(group, el, reload);
  return el;
}

/**
 * Text-to-speech runs in a worker and a failure sends no event: while one is pending
 * (and the page still shows it), read the states every few seconds and redraw only when
 * one changed, so nothing being typed meanwhile is lost for nothing.
 */
function watchPending(group, el, reload) {
  const states = (list) => list.map((a) => `${a.kind}:${a.id}:${a.status}`).sort().join();
  const before = states(group.broadcast.announcements);
  const look = async () => {
    if (!el.isConnected) return;
    try {
      const { group: now } = await gql(STATES, { id: group.id });
      if (!el.isConnected) return;
      if (states(now.broadcast?.announcements ?? []) !== before) return reload();
    } catch {
      // Looked again below; the page shows errors of its own actions.
    }
    setTimeout(look, PENDING_POLL_MS);
  };
  setTimeout(look, PENDING_POLL_MS);
}

function one(group, kind, announcement, admin, live, reload) {
  const box = messages();
  const titleId = `ann-${kind}`;
  return h(
    "article",
    { class: "announcement", "aria-labelledby": titleId },
    h("h3", { id: titleId }, t(`ann.${kind}`)),
    current(announcement),
    admin ? uploadForm(group, kind, live, box, reload) : null,
    admin ? speechForm(group, kind, announcement, live, box, reload) : null,
    box,
  );
}

function current(a) {
  if (!a) return h("p", { class: "muted" }, t("ann.none"));
  const status = t(`ann.status.${a.status}`, { error: a.error || "" });
  const facts = [t(`ann.source.${a.source}`), status];
  if (a.durationMs) facts.push(t("ann.duration", { seconds: (a.durationMs / 1000).toFixed(1) }));
  return h(
    "div",
    { class: "current" },
    h("p", { class: a.status === "FAILED" ? "error-text" : "", "data-status": a.status }, facts.join(" · ")),
    a.text ? h("blockquote", {}, a.text) : null,
    a.downloadUrl && a.status === "READY"
      ? h("audio", { controls: true, preload: "none", src: a.downloadUrl, "aria-label": t("ann.play") })
      : null,
  );
}

async function afterChange(change, live, progress) {
  if (change.command) checkCommand(await untilDone(change.command, live, commandProgress(progress)));
  return true;
}

function uploadForm(group, kind, live, box, reload) {
  const file = h("input", { type: "file", name: "file", accept: ".wav,audio/wav,audio/x-wav" });
  const submit = h("button", { type: "submit" }, t("ann.upload"));
  return h("form", { class: "inline", onsubmit: async (event) => {
    event.preventDefault();
    if (!file.files.length) {
      showOk(box, t("ann.chooseFile"));
      return;
    }
    const ok = await run(submit, box, t("ann.uploading"), async (progress) => {
      const uploaded = await uploadAudio(file.files[0]);
      const { setAnnouncement } = await gql(SET, { g: group.id, k: kind, u: uploaded.id });
      return afterChange(setAnnouncement, live, progress);
    });
    if (ok) reload();
  } }, field(t("ann.file"), file), submit);
}

function speechForm(group, kind, announcement, live, box, reload) {
  const text = h("textarea", { name: "text", rows: 3, maxlength: 2000, required: true },
    announcement?.source === "TTS" ? announcement.text || "" : "");
  const lang = select("language", [["DE", t("language.DE")], ["EN", t("language.EN")]],
    announcement?.language === "en" || announcement?.language === "EN" ? "EN" : "DE");
  const submit = h("button", { type: "submit" }, t("ann.synthesize"));
  return h("form", { onsubmit: async (event) => {
    event.preventDefault();
    const ok = await run(submit, box, t("ann.synthesizing"), async () => {
      await gql(SYNTHESIZE, { g: group.id, k: kind, text: text.value.trim(), lang: lang.value });
      return true;
    });
    if (ok) reload();
  } }, field(t("ann.text"), text), field(t("ann.language"), lang), submit);
}
