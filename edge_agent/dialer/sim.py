"""The simulated dialer, twin of the SwyxWare simulator, behind the `Dialer` port.

Who answers follows the member's state in the simulator's state file, unless
`SimDialerControl` scripts the extension (from any process). Delays are
realistic times `time_scale`; a call is a coroutine that sleeps, so hundreds
run side by side on one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent import filelock
from edge_agent.dialer.common import Emitter, UnplayableAnnouncement, open_master
from edge_agent.dialer.port import (
    STOPPED,
    CallEventKind,
    CallOutcome,
    CallRequest,
    Dialer,
    DialerClosed,
    DialerError,
    DuplicateCall,
    EventSink,
)
from edge_agent.error_text import describe
from edge_agent.files import write_atomic
from edge_agent.pbx.errors import PbxError
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim_state import SimState, StateFile

log = logging.getLogger(__name__)

FORMAT = 1
BUSY_STATES = frozenset(
    {UserState.SPEAKING_EXTERNAL, UserState.ALERTING, UserState.SPEAKING_INTERNAL, UserState.BUSY}
)


class Behaviour(enum.StrEnum):
    """What a scripted extension does, whatever its state (and priority) says."""

    ANSWER = "answer"  # answers, listens to one round, hangs up without a digit
    CONFIRM = "confirm"  # answers and presses the confirm digit after the first round
    REPEAT_THEN_CONFIRM = "repeat_then_confirm"  # presses repeat, then confirm
    VOICEMAIL = "voicemail"  # answers and stays silent until the dialer gives up
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECT = "reject"  # rings, then the member declines
    FAIL = "fail"  # the call cannot be set up; `detail` is the reason


@dataclass(frozen=True)
class Override:
    behaviour: Behaviour
    after_s: float | None = None  # until the member answers or declines; None: 1-3 s
    detail: str | None = None  # the reason a FAIL gives

    def to_json(self) -> dict[str, Any]:
        return {"behaviour": self.behaviour.value, "after_s": self.after_s, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Override:
        """Raises KeyError, TypeError or ValueError when `data` is not an override."""
        after, detail = data["after_s"], data["detail"]
        return cls(Behaviour(data["behaviour"]), after and float(after), detail and str(detail))


class SimScriptDamaged(DialerError):
    """Raised when the simulated dialer's script file cannot be read."""


def script_path(state_path: Path) -> Path:
    """Where the dialer script for the simulator state at `state_path` lives."""
    return state_path.with_name(state_path.name + ".dialer.json")


class SimDialerControl:
    """Scripts extensions of the simulated dialer; safe across processes, as `SimControl` is.

    Every change is a locked read-modify-write that replaces the file
    atomically, so a dialer reading it mid-change sees the old or the new script.
    """

    def __init__(self, state_path: Path) -> None:
        self.path = script_path(state_path)

    def script(
        self,
        extension: str,
        behaviour: Behaviour | str,
        *,
        after_s: float | None = None,
        detail: str | None = None,
    ) -> Override:
        """Makes `extension` behave so on every following call; ValueError on nonsense."""
        if not extension:
            raise ValueError("extension must not be empty")
        if after_s is not None and after_s < 0:
            raise ValueError("after_s must not be negative")
        override = Override(Behaviour(behaviour), after_s, detail)
        self._update(lambda scripts: scripts.__setitem__(extension, override))
        return override

    def clear(self, extension: str | None = None) -> None:
        """Forgets the script of `extension`, or of all when None; the state rules again."""
        self._update(lambda s: s.clear() if extension is None else s.pop(extension, None))

    def overrides(self) -> dict[str, Override]:
        """Raises SimScriptDamaged when the file is there but no script."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SimScriptDamaged(f"The dialer script {self.path} cannot be read: {exc}") from exc
        try:
            if data["format"] != FORMAT:
                raise ValueError(f"unknown format {data['format']!r}")
            return {str(k): Override.from_json(v) for k, v in data["extensions"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SimScriptDamaged(
                f"The dialer script {self.path} is damaged: {describe(exc)}"
            ) from exc

    def _update(self, change: Callable[[dict[str, Override]], object]) -> None:
        # A sidecar lock, as in sim_state: the script file itself is replaced on write.
        with filelock.exclusive(self.path.with_name(self.path.name + ".lock")):
            scripts = self.overrides()
            change(scripts)
            data = {"format": FORMAT, "extensions": {k: v.to_json() for k, v in scripts.items()}}
            # Replaced whole, so a reader sees the old script or the new one, never half.
            write_atomic(self.path, json.dumps(data, indent=2).encode("utf-8"))


@dataclass(frozen=True)
class CallPlan:
    """What the simulated PBX and member will do on one call; seconds before scaling."""

    setup_s: float  # until RINGING, or until the call ends when it never rings
    rings: bool
    after_s: float | None  # ringing until answered (or declined); None: never
    end: CallOutcome | None  # how it ends instead of being answered; None: answered
    detail: str | None  # the reason of that end, or how it was answered
    keys: tuple[str, ...] = ()  # the member's digits, one after each round
    key_delay_s: float = 0.5  # after a round, until the member's digit
    hangs_up: bool = False  # when the keys run out; else silent until the DTMF timeout


def plan_call(request: CallRequest, state: UserState, override: Override | None) -> CallPlan:
    """The behaviour table. Random per call but seeded by `call_id`, so a call replays alike."""
    rng = random.Random(request.call_id)  # noqa: S311 - a simulation, not a secret
    # Drawn in one fixed order whatever the branch, so each draw stays the same per call.
    setup = rng.uniform(0.05, 0.15)  # INVITE to 180 Ringing on a LAN
    human = rng.uniform(1.0, 3.0)  # a person reaching for the phone
    intrusion = rng.uniform(0.2, 0.6)  # the PBX breaking in / the phone auto-answering
    key_delay = rng.uniform(0.3, 0.8)
    confirm, repeat = request.confirm_digit, request.repeat_digit

    def answers(after: float, keys: tuple[str, ...], detail: str | None = None) -> CallPlan:
        return CallPlan(setup, True, after, None, detail, keys, key_delay)

    def ends(outcome: CallOutcome, detail: str) -> CallPlan:
        return CallPlan(setup, False, None, outcome, detail)

    if override is not None:
        after = human if override.after_s is None else override.after_s
        match override.behaviour:
            case Behaviour.ANSWER:
                return CallPlan(setup, True, after, None, None, (), key_delay, hangs_up=True)
            case Behaviour.CONFIRM:
                return answers(after, (confirm,))
            case Behaviour.REPEAT_THEN_CONFIRM:
                return answers(after, (repeat, confirm))
            case Behaviour.VOICEMAIL:
                return answers(after, (), "voicemail")
            case Behaviour.BUSY:
                return ends(CallOutcome.BUSY, "busy")
            case Behaviour.NO_ANSWER:
                return CallPlan(setup, True, None, None, None)
            case Behaviour.REJECT:
                return CallPlan(setup, True, after, CallOutcome.REJECTED, "declined")
            case Behaviour.FAIL:
                return ends(CallOutcome.FAILED, override.detail or "simulated failure")
    if state is UserState.LOGGED_ON:
        return answers(human, (confirm,))
    if state in BUSY_STATES:
        if request.priority:
            return answers(intrusion, (confirm,), "intruded into a running call")
        return ends(CallOutcome.BUSY, f"busy ({state.name.lower()})")
    if state is UserState.DO_NOT_DISTURB:
        if request.priority:
            return answers(intrusion, (confirm,), "auto-answered despite do-not-disturb")
        return ends(CallOutcome.REJECTED, "do not disturb")
    if state is UserState.UNAVAILABLE:
        return ends(CallOutcome.FAILED, "not registered")
    # LOGGED_OFF and AWAY: it rings and nobody comes, whatever the priority.
    return CallPlan(setup, True, None, None, None)


class _CallFails(Exception):
    """Raised when a simulated call cannot go on; the message is the ENDED reason."""


class _Stopped(Exception):
    """Raised in an answered call when its broadcast is stopped."""


STOP_NOTICE_S = 1.5  # "Der Rundruf wurde beendet" when the request names no file


class _Call(Emitter):
    def __init__(self, request: CallRequest, sink: EventSink) -> None:
        super().__init__(request.call_id, sink)
        self.request = request


class SimDialer(Dialer):
    """The simulated dialer on the simulator state at `state_path`.

    `active` and `peak_active` (the most at once) let tests check the executor's channel limit.
    """

    kind = "sim"

    def __init__(
        self, state_path: Path, *, time_scale: float = 1.0, max_parallel: int = 30
    ) -> None:
        if time_scale <= 0 or max_parallel < 1:
            raise ValueError("time_scale must be positive and max_parallel at least 1")
        self._pbx = StateFile(state_path)
        self.control = SimDialerControl(state_path)
        self.time_scale = time_scale
        self._max_parallel = max_parallel
        self._running: set[str] = set()
        self._cached: tuple[tuple[int, int, int], SimState] | None = None
        self._cache_lock = threading.Lock()  # _prepare runs in worker threads
        self.peak_active = 0
        self._closed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    @property
    def active(self) -> int:
        return len(self._running)

    async def call(self, request: CallRequest, on_event: EventSink) -> CallOutcome:
        if self._closed.is_set():
            raise DialerClosed("The dialer is closed")
        if request.call_id in self._running:
            raise DuplicateCall(f"The call {request.call_id} is still running")
        self._running.add(request.call_id)
        self.peak_active = max(self.peak_active, len(self._running))
        self._idle.clear()
        call = _Call(request, on_event)
        try:
            return await self._run(call)
        except asyncio.CancelledError:
            # Hanging up is all a simulated call needs; the executor still learns how it ended.
            if not call.ended:
                await call.end(CallOutcome.FAILED, "cancelled")
            raise
        finally:
            self._running.discard(request.call_id)
            if not self._running:
                self._idle.set()

    async def close(self) -> None:
        self._closed.set()  # wakes every pause, so running calls end "dialer closed"
        await self._idle.wait()

    async def _run(self, call: _Call) -> CallOutcome:
        target, name = call.request.target, call.request.display_name
        await call.emit(CallEventKind.STARTED, f"{target} ({name})")
        try:
            plan, round_s = await asyncio.to_thread(self._prepare, call.request)
            return await self._follow(call, plan, round_s)
        except _CallFails as exc:
            return await call.end(CallOutcome.FAILED, str(exc))

    def _prepare(self, request: CallRequest) -> tuple[CallPlan, float]:
        """Runs in a worker thread: file reads stay off the loop. Raises _CallFails."""
        # The media is loaded before dialing, as a real dialer must offer it in the SDP.
        round_s = self._seconds_of(request.announcement) * request.repetitions
        try:
            state = self._state()
        except PbxError as exc:
            raise _CallFails(exc.message) from exc
        except OSError as exc:  # a missing state file is a PBX that is not there
            raise _CallFails("the PBX is not reachable") from exc
        if state.faults.unreachable:
            raise _CallFails("the PBX is not reachable")
        user = next((u for u in state.users if u.extension == request.target), None)
        if user is None:
            raise _CallFails(f"the extension {request.target} does not exist")
        try:
            override = self.control.overrides().get(request.target)
        except SimScriptDamaged as exc:
            raise _CallFails(str(exc)) from exc
        return plan_call(request, user.state, override), round_s

    def _state(self) -> SimState:
        """The simulator state, parsed again only when the file was replaced.

        Every write replaces the file (a new inode), so a cached parse is never
        stale; a thousand parallel calls must not parse the company a thousand times.
        """
        stat = os.stat(self._pbx.path)
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._cache_lock:
            if self._cached is None or self._cached[0] != key:
                self._cached = (key, self._pbx.read())
            return self._cached[1]

    @staticmethod
    def _seconds_of(announcement: Path) -> float:
        # Only the header is read: the duration is all a simulated call plays.
        try:
            frames, _ = open_master(announcement, read_frames=False)
        except UnplayableAnnouncement as exc:  # the SIP dialer would refuse it too
            raise _CallFails(str(exc)) from exc
        return frames / 8000

    async def _follow(self, call: _Call, plan: CallPlan, round_s: float) -> CallOutcome:
        request = call.request
        await self._pause(plan.setup_s)
        if not plan.rings:
            return await call.end(plan.end or CallOutcome.FAILED, plan.detail)
        await call.emit(CallEventKind.RINGING)
        timeout = request.ring_timeout_s
        if plan.after_s is None or plan.after_s >= timeout:
            await self._pause(timeout)
            return await call.end(CallOutcome.NO_ANSWER, f"no answer within {timeout:g} s")
        await self._pause(plan.after_s)
        if plan.end is not None:
            return await call.end(plan.end, plan.detail)
        await call.emit(CallEventKind.ANSWERED, plan.detail)
        return await self._converse(call, plan, round_s)

    async def _converse(self, call: _Call, plan: CallPlan, round_s: float) -> CallOutcome:
        try:
            return await self._talk(call, plan, round_s)
        except _Stopped:
            # The broadcast was stopped: the member hears so, then the call ends.
            notice = call.request.stop_notice
            await call.emit(CallEventKind.PLAYING, "stop notice")
            seconds = STOP_NOTICE_S
            if notice is not None:
                with contextlib.suppress(_CallFails):  # unreadable: the usual length
                    seconds = self._seconds_of(notice)
            await self._pause(seconds)
            return await call.end(CallOutcome.ANSWERED, STOPPED)

    async def _talk(self, call: _Call, plan: CallPlan, round_s: float) -> CallOutcome:
        """The answered call; any pause raises _Stopped once the broadcast is stopped."""
        request = call.request
        stop = request.stopped
        keys = list(plan.keys)
        rounds = 0
        replay = True
        while replay:
            rounds += 1
            await call.emit(CallEventKind.PLAYING, f"round {rounds}, {request.repetitions}x")
            await self._pause(round_s, stop)
            replay = False
            # A member too slow for the DTMF timeout is hung up on before the digit.
            while keys and not replay and plan.key_delay_s < request.dtmf_timeout_s:
                digit = keys.pop(0)
                await self._pause(plan.key_delay_s, stop)
                await call.emit(CallEventKind.DTMF, digit=digit)
                if digit == request.confirm_digit:
                    await call.emit(CallEventKind.CONFIRMED)
                    return await call.end(CallOutcome.CONFIRMED, None)
                # Past `max_repeats` the repeat digit is heard but plays nothing more.
                replay = digit == request.repeat_digit and rounds <= request.max_repeats
        if plan.hangs_up:
            return await call.end(CallOutcome.ANSWERED, "hung up without confirming")
        timeout = request.dtmf_timeout_s
        await self._pause(timeout, stop)
        return await call.end(CallOutcome.ANSWERED, f"no confirmation within {timeout:g} s")

    async def _pause(self, seconds: float, stop: asyncio.Event | None = None) -> None:
        """Sleeps `seconds` of simulated time; raises _CallFails when the dialer closes,
        _Stopped when `stop` is (or becomes) set first."""
        if stop is not None and not self._closed.is_set():
            if stop.is_set():
                raise _Stopped
            closed = asyncio.ensure_future(self._closed.wait())
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({closed, stopped}, timeout=seconds * self.time_scale)
            finally:
                closed.cancel()
                stopped.cancel()
            if stop.is_set() and not self._closed.is_set():
                raise _Stopped
        elif not self._closed.is_set():
            try:
                async with asyncio.timeout(seconds * self.time_scale):
                    await self._closed.wait()
            except TimeoutError:
                return
        if not self._closed.is_set():
            return
        raise _CallFails("dialer closed")
