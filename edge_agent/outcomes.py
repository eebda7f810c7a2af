"""Sending command outcomes to the central service, so that no outcome holds up the next.

Commands run one by one; an outcome that cannot be sent must not keep the ones
after it (a test broadcast, an alarm's settings) from running. So:

- a transient failure (network, the server's own trouble) is tried again a few
  times, then the outcome is kept for the background to resend, and the queue
  goes on. A replay after a reconnect sends it too (the ledger holds it);
- a refusal is final: the outcome is not sent again as it is. Once, a plain
  failure with the refusal as its reason goes instead, so the command is marked
  failed with why, not left open until it expires;
- a resent outcome carries the directory as the PBX has it now, never an older
  snapshot that would take the mirror back.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_agent.channel import full_jitter
from edge_agent.error_text import describe, redact
from edge_agent.errors import ServerRefused, ServerUnreachable
from edge_agent.ledger import Outcome
from edge_agent.pbx import text
from edge_agent.server import Server

log = logging.getLogger(__name__)

# Tries in line before the queue goes on: waits of up to 1, 2 and 4 s between them.
ATTEMPTS = 4
INLINE_BACKOFF_CAP = 8.0
# How often the background tries the kept outcomes again.
RESEND_EVERY = (20.0, 40.0)
# Kept this long: far past the server's expiry (15 minutes), whose mirror still takes a
# late directory; after that the ledger and a replay are the only way.
KEEP = timedelta(hours=1)
# What the server stores of an error; a refusal's words in the failure sent instead.
ERROR_MAX = 4000
REASON_MAX = 1000

Directory = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class _Kept:
    outcome: Outcome
    until: datetime


def storable(outcome: Outcome, hide: Iterable[object] = ()) -> Outcome:
    """The outcome with its error text cleaned: it may quote PBX text (a NUL, a lone
    surrogate) that neither the ledger nor the server would take; `hide` (the command's
    secrets) hidden in it first, then cut: a cut could split a secret."""
    if outcome.error is None:
        return outcome
    error = redact(text.clean(outcome.error, len(outcome.error)), hide, ERROR_MAX)
    return Outcome(outcome.ok, outcome.result, error)


def refused_outcome(exc: Exception) -> Outcome:
    """The plain failure sent in place of an outcome the server refused, in words users
    may read: the refusal's public words, never the service's address or raw answer."""
    why = exc.public if isinstance(exc, ServerRefused) else describe(exc)
    reason = text.clean(f"the central service refused the agent's result: {why}", REASON_MAX)
    return Outcome(ok=False, result={}, error=reason)


class OutcomeSender:
    def __init__(
        self, server: Server, fresh_directory: Directory, backoff_cap: float = INLINE_BACKOFF_CAP
    ) -> None:
        self.server = server
        self.fresh_directory = fresh_directory
        self.backoff_cap = min(backoff_cap, INLINE_BACKOFF_CAP)
        self.kept: dict[str, _Kept] = {}

    async def send(self, command_id: str, outcome: Outcome) -> None:
        """Sends the outcome; returns after at most ATTEMPTS tries, whatever happens."""
        for attempt in range(ATTEMPTS):
            try:
                await self._send_once(command_id, outcome)
                return
            except ServerUnreachable as exc:
                if attempt + 1 == ATTEMPTS:
                    log.warning("reporting %s failed (%s); kept to send later", command_id, exc)
                    break
                delay = full_jitter(attempt, self.backoff_cap)
                log.warning("reporting %s failed (%s); retrying in %.1f s", command_id, exc, delay)
                await asyncio.sleep(delay)
        self.kept[command_id] = _Kept(outcome, datetime.now(UTC) + KEEP)

    async def _send_once(self, command_id: str, outcome: Outcome) -> None:
        """One try; a refusal (or an outcome that cannot even be encoded) is final."""
        try:
            await self.server.complete(command_id, outcome.ok, outcome.result, outcome.error)
        except ServerUnreachable:
            raise
        except (ServerRefused, ValueError, TypeError) as exc:
            log.error("the server refused the outcome of %s: %s", command_id, exc)
            self.kept.pop(command_id, None)
            if outcome.result or outcome.ok:  # the plain failure is sent once, not in a loop
                await self._send_refusal(command_id, exc)
            return
        self.kept.pop(command_id, None)

    async def _send_refusal(self, command_id: str, exc: Exception) -> None:
        plain = refused_outcome(exc)
        try:
            await self.server.complete(command_id, plain.ok, plain.result, plain.error)
        except ServerRefused as again:
            log.error("the server refused the failure of %s as well: %s", command_id, again)

    async def resend_forever(self) -> None:
        """Tries the kept outcomes again now and then; never raises."""
        while True:
            await asyncio.sleep(random.uniform(*RESEND_EVERY))  # noqa: S311 - spreading load
            try:
                await self.resend()
            except Exception:  # the loop must outlive any one bad outcome
                log.exception("resending outcomes failed unexpectedly")

    async def resend(self) -> None:
        now = datetime.now(UTC)
        for command_id, kept in list(self.kept.items()):
            if kept.until <= now:
                log.error("the outcome of %s could not be sent for an hour: dropped", command_id)
                self.kept.pop(command_id, None)
                continue
            outcome = kept.outcome
            if "directory" in outcome.result:
                outcome = Outcome(
                    outcome.ok, {**outcome.result, **await self.fresh_directory()}, outcome.error
                )
            try:
                await self._send_once(command_id, outcome)
            except ServerUnreachable as exc:
                log.warning("resending %s failed (%s); trying again later", command_id, exc)
                return  # the server is away: the others wait for the next round
