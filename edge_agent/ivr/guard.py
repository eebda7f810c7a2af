"""Wrong PINs at the agent's own IVR: the per-caller delay and the group's notice.

The rules and the file are the simulator's (pbx/sim_throttle.py), with the values
of definition.py: per caller number a growing wait before the next try, per agent
number one notice after 10 wrong PINs within 10 minutes. Nobody is ever locked out.
The state lives in `<state_dir>/ivr/pins.trigger.json` (a locked read-modify-write
that replaces the file whole), so it survives restarts. Best effort, as in the
script: when the file cannot be used the call goes on unthrottled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from edge_agent.files import private_dir
from edge_agent.ivr.notices import NoticeOutbox, wrong_pins
from edge_agent.pbx.sim_throttle import AgentThrottle, ThrottleFile, ThrottleRules

log = logging.getLogger(__name__)

T = TypeVar("T")


class PinGuard:
    """The throttle of every agent number this agent answers for, and its notices."""

    def __init__(
        self,
        state_dir: Path,
        outbox: NoticeOutbox,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = state_dir / "ivr"
        self.file = ThrottleFile(self.folder / "pins")
        self.outbox = outbox
        self.rules = ThrottleRules()  # definition.py's values, as rundruf.lua's
        self.clock = clock

    async def wait(self, agent_number: str, caller: str) -> float:
        """Seconds `caller` must still wait before the next PIN try counts."""
        now = self.clock()
        found = await self._update(agent_number, lambda t: t.wait(caller, now, self.rules))
        return found or 0.0

    async def right(self, agent_number: str, caller: str) -> None:
        """The right PIN: the caller's count starts over."""
        await self._update(agent_number, lambda t: t.clear(caller))

    async def wrong(self, agent_number: str, caller: str) -> bool:
        """Counts a wrong PIN; True when it made the group's notice due (then queued)."""
        now = self.clock()
        claim = await self._update(agent_number, lambda t: t.record_wrong(caller, now, self.rules))
        if claim is None:
            return False
        at = datetime.fromtimestamp(claim.claimed_at, UTC)
        notice = wrong_pins(agent_number, caller, claim.count, at)
        try:
            await asyncio.to_thread(self.outbox.add, notice)
        except OSError as exc:
            # Not kept: released, so that the next wrong PIN tries again (as the script).
            log.error("the wrong-PIN notice cannot be kept: %r", exc)
            await self._update(agent_number, lambda t: t.release(claim))
            return False
        self.outbox.added.set()
        log.warning(
            "%d wrong PINs for agent number %s within %.0f s: notice %s queued",
            claim.count,
            agent_number,
            self.rules.notice_window_s,
            notice["noticeId"],
        )
        return True

    async def _update(self, agent_number: str, change: Callable[[AgentThrottle], T]) -> T | None:
        try:
            return await asyncio.to_thread(self._locked_update, agent_number, change)
        except OSError as exc:
            log.warning("the wrong-PIN throttle failed, going on without it: %r", exc)
            return None

    def _locked_update(self, agent_number: str, change: Callable[[AgentThrottle], T]) -> T:
        private_dir(self.folder)  # the lock file is made in it
        return self.file.update(agent_number, change)
