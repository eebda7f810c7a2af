// The texts in German (default) or English: t(key, params), and API errors in plain words.

import de from "./texts/de.js";
import en from "./texts/en.js";

const TEXTS = { de, en };

const STORE = "rundruf.language";
let current = localStorage.getItem(STORE) === "en" ? "en" : "de";

export function language() {
  return current;
}

export function setLanguage(lang) {
  current = lang === "en" ? "en" : "de";
  localStorage.setItem(STORE, current);
  document.documentElement.lang = current;
}

export function t(key, params = {}) {
  const text = TEXTS[current][key] ?? TEXTS.de[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
}

/**
 * The name a person knows a field by: its label, for a list item the list's ("userIds.3" →
 * field.userIds.N), else the server's own name for it, so the sentence still names it.
 */
export function fieldLabel(field) {
  const texts = TEXTS[current];
  return texts[`field.${field}`] ?? texts[`field.${field.replace(/\.\d+(?=\.|$)/g, ".N")}`] ?? field;
}

/** Why the server refused an input, from its reason code and parameters; null if unknown. */
export function reasonText(extensions = {}) {
  const { reason, min, max } = extensions;
  if (!reason) return null;
  const key = reason === "outOfRange" && min !== undefined && max !== undefined ? "reason.outOfRange.between" : `reason.${reason}`;
  return TEXTS[current][key] ? t(key, extensions) : null;
}

/** An API error in plain words: what went wrong by its code, then the server's detail. */
export function explain(error, { login = false } = {}) {
  const code = error.code || "other";
  if (login && code === "UNAUTHENTICATED") return { text: t("error.login"), detail: "" };
  let text;
  // A refusal whose reason the page can word says all; the server's English adds nothing.
  let worded = false;
  if (code === "BAD_USER_INPUT") {
    const reason = reasonText(error.extensions);
    const field = error.field ? fieldLabel(error.field) : null;
    worded = reason !== null;
    if (reason && field) text = t("error.BAD_USER_INPUT.reason", { field, reason });
    else if (reason) text = t("error.BAD_USER_INPUT.reasonOnly", { reason });
    else if (field) text = t("error.BAD_USER_INPUT.field", { field });
    else text = t("error.BAD_USER_INPUT");
  } else if (code === "TOO_MANY_ATTEMPTS" && error.extensions?.retryAfterSeconds) {
    const seconds = error.extensions.retryAfterSeconds;
    text = t(seconds === 1 ? "error.TOO_MANY_ATTEMPTS.waitOne" : "error.TOO_MANY_ATTEMPTS.wait", { seconds });
  } else {
    const key = `error.${code}`;
    text = TEXTS[current][key] ? t(key) : t("error.other");
  }
  // These are said in full by their code (a wait: by its seconds); the server's
  // English words would only repeat them in another language.
  const quiet = worded || ["NETWORK", "INTERNAL_SERVER_ERROR", "UNAUTHENTICATED", "HTTP", "TOO_MANY_ATTEMPTS", "BAD_REQUEST"].includes(code);
  const detail = quiet || !error.message ? "" : t("error.detail", { message: error.message });
  return { text, detail };
}

document.documentElement.lang = current;
