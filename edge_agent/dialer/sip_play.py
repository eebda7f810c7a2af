"""The announcement on an answered SIP call: rounds, digits and hold (issue 15, point 7).

A round plays the message (`repetitions` times), then waits `dtmf_timeout_s` for a
digit: the confirm digit confirms (also while the message plays), the repeat digit
plays it again (at most `max_repeats` more rounds), another key gets one more wait.

Hold. A phone that puts the call on hold (its SDP says `sendonly` or `inactive`, or
names the address 0.0.0.0: `Call.on_hold`) hears nothing from us: the stream goes
quiet at once (its RTP clock runs on), HELD is emitted, and no timer of the round runs
while the member is away. When the phone comes back (`sendrecv` or `recvonly`),
RESUMED is emitted and the round starts over from the beginning of the message: a
member who was away hears it whole. A key pressed on hold starts no round nobody
would hear (the return starts one anyway); only the confirm digit counts.

A call still on hold at the request's `hold_until` (the broadcast's timeout) is hung
up: ANSWERED with the detail ENDED_ON_HOLD, a code the website words. A hold begun
shortly before that, or after it (a member who answered late), still lasts
HOLD_GRACE_S; that grace past `hold_until` is the call's once, shared by all its
holds, so holding again and again never keeps a call for long after the broadcast's
timeout. Without `hold_until` a hold lasts HOLD_LIMIT_S. Once the broadcast's quorum
is reached (`quorum_reached`), a call on hold is not waited for any more: it ends
ANSWERED with the detail ENDED_ON_HOLD_QUORUM (docs/decisions/sip-hold.md).

Stop (issue 17). When the request's `stopped` is set, the message stops at once, the
member hears the stop notice ("Der Rundruf wurde beendet") to its end and the call ends
ANSWERED with the detail STOPPED (the dialer then sends BYE). A call on hold hears
nothing, so it ends at once.
"""

from __future__ import annotations

import asyncio
import enum
from datetime import UTC, datetime
from typing import Any

from edge_agent.dialer.common import Emitter
from edge_agent.dialer.port import STOPPED, CallEventKind, CallOutcome, CallRequest
from edge_agent.sip.call import Call
from edge_agent.sip.pacer import Pacer, RtpStream

__all__ = [
    "ENDED_ON_HOLD",
    "ENDED_ON_HOLD_QUORUM",
    "HOLD_GRACE_S",
    "HOLD_LIMIT_S",
    "Announcement",
]

# The detail of a call hung up because it was still on hold at its limit.
ENDED_ON_HOLD = "endedOnHold"
# ... or on hold when the broadcast's quorum was reached.
ENDED_ON_HOLD_QUORUM = "endedOnHoldQuorum"
# How long a call may stay on hold when the request sets no `hold_until`.
HOLD_LIMIT_S = 600.0
# The least a hold lasts, also one begun after `hold_until`: a member who answered
# late and holds to fetch a headset comes back to the message. A budget per call.
HOLD_GRACE_S = 30.0


class Wake(enum.Enum):
    """Why a wait for a digit ended without one."""

    PLAYED = "played"  # the message went out to its end
    HUNG_UP = "hung up"
    TIMEOUT = "timeout"
    RESUMED = "resumed"  # back from hold: the round starts over
    HOLD_OVER = "hold over"  # still on hold at the limit
    QUORUM = "quorum"  # on hold when the broadcast's quorum is reached
    STOPPED = "stopped"  # the broadcast was stopped (issue 17)


class Announcement:
    """One answered call's message and the member's keys, until the call's outcome."""

    def __init__(
        self,
        pacer: Pacer,
        call: Call,
        request: CallRequest,
        payload: bytes,
        payload_type: int,
        emit: Emitter,
        stop_payload: bytes | None = None,
    ) -> None:
        self.pacer = pacer
        self.stop_payload = stop_payload  # the stop notice in the call's codec
        self.call = call
        self.request = request
        self.emit = emit
        self._finished = asyncio.Event()
        self.payload_type = payload_type
        self.stream = RtpStream(
            payload * request.repetitions,
            payload_type,
            call.ssrc,
            call.send_rtp,
            self._finished.set,
        )
        # Kept across waits, so that a digit or a hold change is never lost between them.
        self._digit: asyncio.Future[str] | None = None
        self._hold: asyncio.Future[bool] | None = None
        self.on_hold = False
        self._hold_ends = 0.0  # loop time
        self._held_at = 0.0  # loop time: when the hold began
        self._hold_bound = 0.0  # loop time: `hold_until`, as it was when the hold began
        self._grace = HOLD_GRACE_S  # left of the grace past `hold_until`

    async def run(self) -> CallOutcome:
        request, emit = self.request, self.emit
        confirm = request.confirm_digit
        rounds = 0
        again = False  # the round starts over after a hold
        try:
            while True:
                rounds += 0 if again else 1
                self._play_from_start()
                after = ", after hold" if again else ""
                await emit.emit(
                    CallEventKind.PLAYING, f"round {rounds}, {request.repetitions}x{after}"
                )
                got = await self._wait(play=True, limit_s=None)
                if got is Wake.PLAYED:
                    got = await self._wait(play=False, limit_s=request.dtmf_timeout_s)
                again = got is Wake.RESUMED
                if again:
                    continue
                if got is Wake.STOPPED:
                    return await self._stopped()
                if not isinstance(got, str):
                    return await self._unconfirmed(got)
                await emit.emit(CallEventKind.DTMF, digit=got)
                if got == confirm:
                    return await self._confirmed()
                if got != request.repeat_digit or rounds > request.max_repeats:
                    # Another key, or repeats used up: wait for the confirm digit once more.
                    got = await self._wait(play=False, limit_s=request.dtmf_timeout_s)
                    again = got is Wake.RESUMED
                    if again:
                        continue
                    if got == confirm:
                        await emit.emit(CallEventKind.DTMF, digit=got)
                        return await self._confirmed()
                    if got is Wake.STOPPED:
                        return await self._stopped()
                    if got in (Wake.HOLD_OVER, Wake.QUORUM):
                        return await self._unconfirmed(got)
                    return await emit.end(CallOutcome.ANSWERED, "did not confirm")
        finally:
            self.pacer.remove(self.stream)
            for task in (self._digit, self._hold):
                if task is not None:
                    task.cancel()

    async def _stopped(self) -> CallOutcome:
        """The broadcast was stopped: the notice instead of the message, then the end."""
        self.pacer.remove(self.stream)
        if self.stop_payload is not None and not self.on_hold:
            await self.emit.emit(CallEventKind.PLAYING, "stop notice")
            done = asyncio.Event()
            # The same SSRC, sequence and RTP clock: the phone hears one stream.
            old = self.stream
            self.stream = RtpStream(
                self.stop_payload,
                self.payload_type,
                self.call.ssrc,
                self.call.send_rtp,
                done.set,
                sequence=old.sequence,
                timestamp=old.timestamp,
            )
            self.pacer.add(self.stream)
            bye = asyncio.ensure_future(self.call.remote_bye.wait())
            played = asyncio.ensure_future(done.wait())
            try:
                await asyncio.wait({bye, played}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                bye.cancel()
                played.cancel()
        return await self.emit.end(CallOutcome.ANSWERED, STOPPED)

    async def _confirmed(self) -> CallOutcome:
        await self.emit.emit(CallEventKind.CONFIRMED)
        return await self.emit.end(CallOutcome.CONFIRMED, None)

    async def _unconfirmed(self, why: Wake) -> CallOutcome:
        if why is Wake.HOLD_OVER:
            detail = ENDED_ON_HOLD
        elif why is Wake.QUORUM:
            detail = ENDED_ON_HOLD_QUORUM
        elif why is Wake.HUNG_UP:
            detail = "hung up without confirming"
        else:
            detail = f"no confirmation within {self.request.dtmf_timeout_s:g} s"
        return await self.emit.end(CallOutcome.ANSWERED, detail)

    def _play_from_start(self) -> None:
        self._finished.clear()
        if self.stream in self.pacer:
            self.stream.restart()
        else:
            self.pacer.add(self.stream)

    async def _wait(self, *, play: bool, limit_s: float | None) -> str | Wake:
        """The next digit, or why there is none: the message played to its end (`play`),
        the member hung up, `limit_s` passed, or a hold changed the round (time on hold
        counts against the hold's limit only)."""
        loop = asyncio.get_running_loop()
        call = self.call
        quorum = self.request.quorum_reached
        stop = self.request.stopped
        deadline = None if limit_s is None else loop.time() + limit_s
        while True:
            if stop is not None and stop.is_set():
                return Wake.STOPPED
            if self.on_hold and quorum is not None and quorum.is_set():
                return Wake.QUORUM
            if self._digit is None:
                self._digit = asyncio.ensure_future(call.digits.get())
            if self._hold is None:
                self._hold = asyncio.ensure_future(call.holds.get())
            bye = asyncio.ensure_future(call.remote_bye.wait())
            waits: set[asyncio.Future[Any]] = {self._digit, self._hold, bye}
            played = None
            if play and not self.on_hold:
                played = asyncio.ensure_future(self._finished.wait())
                waits.add(played)
            reached = None
            if self.on_hold and quorum is not None:
                reached = asyncio.ensure_future(quorum.wait())
                waits.add(reached)
            stopping = None
            if stop is not None:
                stopping = asyncio.ensure_future(stop.wait())
                waits.add(stopping)
            until = self._hold_ends if self.on_hold else deadline
            timeout = None if until is None else max(0.0, until - loop.time())
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in (bye, played, reached, stopping):
                    if waiting is not None:
                        waiting.cancel()
            if self._digit.done():
                digit, self._digit = self._digit.result(), None
                if self.on_hold and digit != self.request.confirm_digit:
                    # A round started now nobody would hear, a repeat used up for nothing.
                    await self.emit.emit(CallEventKind.DTMF, "on hold: ignored", digit=digit)
                    continue
                return digit
            if self._hold.done():
                held, self._hold = self._hold.result(), None
                if held and not self.on_hold:
                    await self._held()
                elif not held and self.on_hold:
                    self._resumed()
                    await self.emit.emit(CallEventKind.RESUMED)
                    return Wake.RESUMED
                continue
            if call.remote_bye.is_set():
                return Wake.HUNG_UP
            if played is not None and self._finished.is_set():
                return Wake.PLAYED
            if until is not None and loop.time() >= until:
                return Wake.HOLD_OVER if self.on_hold else Wake.TIMEOUT

    async def _held(self) -> None:
        """The member put the call on hold: silence at once, and the hold's limit."""
        self.on_hold = True
        self.stream.pause()
        now = self._held_at = asyncio.get_running_loop().time()
        until = self.request.hold_until
        if until is None:
            self._hold_ends = now + HOLD_LIMIT_S
        else:
            # `hold_until`, but at least what is left of the grace from now on.
            self._hold_bound = now + (until - datetime.now(UTC)).total_seconds()
            self._hold_ends = max(self._hold_bound, now + self._grace)
        await self.emit.emit(CallEventKind.HELD)

    def _resumed(self) -> None:
        """Back from hold: the time this hold lasted past `hold_until` is grace used up."""
        self.on_hold = False
        if self.request.hold_until is not None:
            now = asyncio.get_running_loop().time()
            self._grace -= max(0.0, now - max(self._held_at, self._hold_bound))
