"""The announcement on an answered SIP call: rounds, digits and hold (issue 15, point 7).

A round plays the message (`repetitions` times), then waits `dtmf_timeout_s` for a
digit: the confirm digit confirms (also while the message plays), the repeat digit
plays it again (at most `max_repeats` more rounds), another key gets one more wait.

Hold. A phone that puts the call on hold (its SDP says `sendonly` or `inactive`, or
names the address 0.0.0.0: `Call.on_hold`) hears nothing from us: the stream goes
quiet at once (its RTP clock runs on), HELD is emitted, and no timer of the round runs
while the member is away. When the phone comes back (`sendrecv` or `recvonly`),
RESUMED is emitted and the round starts over from the beginning of the message: a
member who was away hears it whole. A call still on hold at the request's
`hold_until` (the broadcast's timeout), or HOLD_LIMIT_S after the hold began when
there is none, is hung up: ANSWERED with the detail ENDED_ON_HOLD, a code the website
words (docs/decisions/sip-hold.md).
"""

from __future__ import annotations

import asyncio
import enum
from datetime import UTC, datetime
from typing import Any

from edge_agent.dialer.common import Emitter
from edge_agent.dialer.port import CallEventKind, CallOutcome, CallRequest
from edge_agent.sip.call import Call
from edge_agent.sip.pacer import Pacer, RtpStream

__all__ = ["ENDED_ON_HOLD", "HOLD_LIMIT_S", "Announcement"]

# The detail of a call hung up because it was still on hold at its limit.
ENDED_ON_HOLD = "endedOnHold"
# How long a call may stay on hold when the request sets no `hold_until`.
HOLD_LIMIT_S = 600.0


class Wake(enum.Enum):
    """Why a wait for a digit ended without one."""

    PLAYED = "played"  # the message went out to its end
    HUNG_UP = "hung up"
    TIMEOUT = "timeout"
    RESUMED = "resumed"  # back from hold: the round starts over
    HOLD_OVER = "hold over"  # still on hold at the limit


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
    ) -> None:
        self.pacer = pacer
        self.call = call
        self.request = request
        self.emit = emit
        self._finished = asyncio.Event()
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
                    if got is Wake.HOLD_OVER:
                        return await self._unconfirmed(got)
                    return await emit.end(CallOutcome.ANSWERED, "did not confirm")
        finally:
            self.pacer.remove(self.stream)
            for task in (self._digit, self._hold):
                if task is not None:
                    task.cancel()

    async def _confirmed(self) -> CallOutcome:
        await self.emit.emit(CallEventKind.CONFIRMED)
        return await self.emit.end(CallOutcome.CONFIRMED, None)

    async def _unconfirmed(self, why: Wake) -> CallOutcome:
        if why is Wake.HOLD_OVER:
            detail = ENDED_ON_HOLD
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
        deadline = None if limit_s is None else loop.time() + limit_s
        while True:
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
            until = self._hold_ends if self.on_hold else deadline
            timeout = None if until is None else max(0.0, until - loop.time())
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                bye.cancel()
                if played is not None:
                    played.cancel()
            if self._digit.done():
                digit, self._digit = self._digit.result(), None
                return digit
            if self._hold.done():
                held, self._hold = self._hold.result(), None
                if held and not self.on_hold:
                    await self._held()
                elif not held and self.on_hold:
                    self.on_hold = False
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
        loop = asyncio.get_running_loop()
        until = self.request.hold_until
        if until is None:
            self._hold_ends = loop.time() + HOLD_LIMIT_S
        else:
            self._hold_ends = loop.time() + (until - datetime.now(UTC)).total_seconds()
        await self.emit.emit(CallEventKind.HELD)
