// Changes that go through the agent: a mutation returns a Command; wait for the agent's answer.

import { onAgentChange, waitingText } from "./agent.js";
import { gql } from "./api.js";
import { t } from "./i18n.js";

const TERMINAL = new Set(["SUCCEEDED", "FAILED", "EXPIRED"]);
const COMMAND = "query($id: ID!) { command(id: $id) { id type status error result } }";

/**
 * Waits until the agent has carried out a command: live through `commandUpdated`, with a
 * slow re-read in case an update passed before the subscription stood.
 *
 * `onProgress(command, waiting)`: `waiting` is the words for an open command while the
 * agent is away (it stays queued and runs once the agent reports), else null.
 * `signal` (an AbortSignal): stop waiting; resolves to the command as last seen.
 */
export function untilDone(command, live, onProgress = () => {}, signal = null) {
  return new Promise((resolve) => {
    let finished = false;
    let last = command;
    const tell = () => last.status && onProgress(last, TERMINAL.has(last.status) ? null : waitingText());
    const unwatch = onAgentChange(() => !finished && tell());
    const finish = (c, force = false) => {
      if (finished) return;
      last = c;
      if (!force) tell();
      if (!force && !TERMINAL.has(c.status)) return;
      finished = true;
      stop();
      unwatch();
      clearInterval(timer);
      resolve(c);
    };
    const stop = live.subscribe(
      "subscription { commandUpdated { id type status error result } }",
      {},
      (data) => data.commandUpdated.id === command.id && finish(data.commandUpdated),
    );
    const reread = () => gql(COMMAND, { id: command.id }).then((d) => finish(d.command), () => {});
    const timer = setInterval(reread, 2000);
    signal?.addEventListener("abort", () => finish(last, true), { once: true });
    reread();
  });
}

export function commandProgress(progress) {
  return (command, waiting) => waiting
    ? progress(waiting, { waiting: true })
    : progress(t(`command.${command.status.toLowerCase()}`, { error: command.error || "" }));
}

/** Throws when the agent did not carry the command out, with its reason. */
export function checkCommand(command) {
  if (command.status === "SUCCEEDED") return command;
  const text = command.status === "EXPIRED" ? t("command.expired") : t("command.failed", { error: command.error || "" });
  throw Object.assign(new Error(text), { code: null });
}

/** Sends a command mutation and waits for the agent; throws its failure in words. */
export async function command(live, progress, query, variables) {
  const data = await gql(query, variables);
  const sent = Object.values(data)[0];
  return checkCommand(await untilDone(sent, live, commandProgress(progress)));
}
