"""Wrong PINs at the agent's own IVR: the per-caller delay and the group's notice.

The rules and the file are the simulator's (pbx/sim_throttle.py), with the values
of definition.py: per caller number a growing wait before the next try, per agent
number one notice after 10 wrong PINs within 10 minutes. Nobody is ever locked out.
The state lives in `<state_dir>/ivr/pins.trigger.json` (a locked read-modify-write
that replaces the file whole), so it survives restarts. Best effort, as in the
script: when the file cannot be used the call goes on unthrottled.

Two more rules here, the agent's own (review of issue 16, finding 6; not in rundruf.lua,
whose store has no lock across calls):

- A try is claimed when its wait is asked for (`wait`, under a lock) and counts as a
  wrong PIN until the call says how it went (`right`, `wrong`, or `unused`: nothing
  entered, or the call ended). Parallel calls from one number so queue behind each
  other with the growing delay, instead of all guessing at once.
- Once the group's notice threshold is reached within the window (an attack, and the
  notice has gone out), tries from anyone at that agent number are at least
  AGENT_GAP_S apart: rotating numbers no longer multiplies the guesses. A slow-down,
  never a lock: tries go one per gap to the calls still waiting, oldest first; a call
  that hangs up leaves the queue and those behind it move up (no turn is handed out
  ahead of time, so calls that come and go cannot push the queue into the future:
  review 2 of issue 16, finding 1). The right PIN waits at most a gap per call still
  waiting ahead of it (at most MAX_INCOMING gaps).

Claims live in memory: they belong to calls under way, which a restart ends anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from edge_agent.files import private_dir
from edge_agent.ivr.notices import NoticeOutbox, wrong_pins
from edge_agent.pbx.sim_throttle import AgentThrottle, ThrottleFile, ThrottleRules, caller_key

log = logging.getLogger(__name__)

T = TypeVar("T")

# Under attack, PIN tries at one agent number from anyone are at least this far apart:
# 720 tries an hour (a 4-digit PIN takes hours on average, a 6-digit one weeks), while a
# caller with the right PIN waits this long per try claimed before theirs.
AGENT_GAP_S = 5.0
# A claim its call never settled (it cannot happen short of a bug) is forgotten after this.
CLAIM_TTL_S = 300.0


@dataclass
class Claim:
    caller: str  # caller_key
    at: float  # the earliest the try may be taken by the caller's own delay (the clock's time)
    # Under attack the claim waits in the agent number's queue of calls still connected
    # (FIFO): one try per AGENT_GAP_S, to the oldest waiter whose own delay is over.
    queued: bool = False
    given: bool = False  # its try was handed out (not queued, or its turn came)


class PinGuard:
    """The throttle of every agent number this agent answers for, and its notices."""

    def __init__(
        self,
        state_dir: Path,
        outbox: NoticeOutbox,
        *,
        clock: Callable[[], float] = time.time,
        agent_gap_s: float = AGENT_GAP_S,
    ) -> None:
        self.folder = state_dir / "ivr"
        self.file = ThrottleFile(self.folder / "pins")
        self.outbox = outbox
        self.rules = ThrottleRules()  # definition.py's values, as rundruf.lua's
        self.clock = clock
        self.agent_gap_s = agent_gap_s
        self._claims: dict[str, list[Claim]] = {}  # per agent number, oldest first
        self._given: dict[str, float] = {}  # per agent number: when the last try was handed out
        self._claiming = asyncio.Lock()

    async def wait(self, agent_number: str, caller: str) -> float:
        """Claims `caller`'s next PIN try: about the seconds to wait before it is taken (under
        attack an estimate: ask `left` until it says 0). The call then settles the claim with
        `right`, `wrong` or `unused`."""
        async with self._claiming:  # two claims at once must see each other
            now = self.clock()
            throttle = await self._look(agent_number)
            claims = [c for c in self._claims.get(agent_number, []) if now - c.at < CLAIM_TTL_S]
            claim = Claim(caller_key(caller), now)
            if throttle is not None:
                claim = self._claim(throttle, claims, caller, now)
            self._claims[agent_number] = [*claims, claim]
            return self._left(agent_number, claim, now)

    async def left(self, agent_number: str, caller: str) -> float:
        """The seconds until `caller`'s claimed try may be taken, 0 once it is handed out.
        Asked again while waiting, so that a waiter ahead who hangs up moves everyone up."""
        async with self._claiming:
            key = caller_key(caller)
            claims = self._claims.get(agent_number, [])
            waiting = [c for c in claims if c.caller == key and not c.given]
            if not waiting:
                return 0.0
            return self._left(agent_number, waiting[0], self.clock())

    def _left(self, agent_number: str, claim: Claim, now: float) -> float:
        """`claim`'s wait as of now; hands its try out when its turn has come."""
        if claim.given:
            return max(0.0, claim.at - now)
        own = max(0.0, claim.at - now)
        if not claim.queued:
            claim.given = own <= 0
            return own
        # FIFO of the calls still connected: the try after the last one handed out goes to
        # the oldest waiter whose own delay is over; every waiter ahead costs one gap.
        ahead = 0
        for other in self._claims.get(agent_number, []):
            if other is claim:
                break
            if other.queued and not other.given and other.at <= now:
                ahead += 1
        last = self._given.get(agent_number)
        first = now if last is None else max(now, last + self.agent_gap_s)
        turn = max(own, first - now + ahead * self.agent_gap_s)
        if turn <= 0:
            claim.given = True
            self._given[agent_number] = now
        return turn

    def _claim(
        self,
        throttle: AgentThrottle,
        claims: list[Claim],
        caller: str,
        now: float,
    ) -> Claim:
        """`caller`'s next try, the claims of the calls under way counted."""
        rules = self.rules
        key = caller_key(caller)
        at = now + throttle.wait(caller, now, rules)
        own = [c.at for c in claims if c.caller == key]
        if own:  # each try claimed before counts as a wrong PIN until settled
            count = throttle.count(caller, now, rules) + len(own)
            at = max(at, own[-1] + rules.delays[min(count, len(rules.delays) - 1)])
        recent = sum(1 for t in throttle.wrong_pins if now - t < rules.notice_window_s)
        # Under attack: one try per gap, from anyone, in the order of the waiting calls.
        return Claim(key, at, queued=recent >= rules.notice_threshold)

    def _settle(self, agent_number: str, caller: str, *, used: bool) -> None:
        """The caller's oldest claim at `agent_number` is settled and removed: a waiter that
        hangs up leaves the queue, everyone behind it moves up. A used try that was not
        queued still counts as handed out (the next queued one comes a gap after it)."""
        claims = self._claims.get(agent_number, [])
        key = caller_key(caller)
        for n, claim in enumerate(claims):
            if claim.caller == key:
                del claims[n]
                if used and not claim.queued:
                    self._given[agent_number] = max(claim.at, self._given.get(agent_number, 0.0))
                return

    async def unused(self, agent_number: str, caller: str) -> None:
        """The claimed try was not used (nothing entered, or the call ended)."""
        self._settle(agent_number, caller, used=False)

    async def right(self, agent_number: str, caller: str) -> None:
        """The right PIN: the caller's count starts over."""
        await self._update(agent_number, lambda t: t.clear(caller))
        self._settle(agent_number, caller, used=True)

    async def wrong(self, agent_number: str, caller: str) -> bool:
        """Counts a wrong PIN; True when it made the group's notice due (then queued)."""
        now = self.clock()
        # Counted first, then settled: a claim meanwhile sees the try at least once.
        claim = await self._update(agent_number, lambda t: t.record_wrong(caller, now, self.rules))
        self._settle(agent_number, caller, used=True)
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

    async def _look(self, agent_number: str) -> AgentThrottle | None:
        """The agent number's state as it is (the file is not written)."""
        return await self._update(agent_number, lambda t: t)

    async def _update(self, agent_number: str, change: Callable[[AgentThrottle], T]) -> T | None:
        try:
            return await asyncio.to_thread(self._locked_update, agent_number, change)
        except OSError as exc:
            log.warning("the wrong-PIN throttle failed, going on without it: %r", exc)
            return None

    def _locked_update(self, agent_number: str, change: Callable[[AgentThrottle], T]) -> T:
        private_dir(self.folder)  # the lock file is made in it
        return self.file.update(agent_number, change)
