"""The caller's line of an incoming call: `ivr.port.CallerLine` over SIP and RTP (issue 16).

- play: the PCM encoded in the call's law, sent in 20 ms frames by the pacer the
  announcements use (`pacer.RtpStream`); one SSRC for the call, sequence numbers
  and timestamps going on from one prompt to the next (the clock runs on between
  them, as for a phone with voice activity detection), the marker bit at each start.
  With barge-in the first key pressed while it plays stops it; keys stay queued.
- keys: RFC 4733 events (each press once, `rtp.DtmfDetector`) and SIP INFO, in the
  order they came, at most MAX_QUEUED_KEYS (more are dropped).
- record: the caller's audio from now (`recording.py`) until the end key, until
  `silence_seconds` without speech once speech began, `no_speech_s` without any
  speech from the start (0: off), or `max_seconds`. Keys pressed while it records
  are taken by it (the end key too), and keys queued before it starts are forgotten
  (a "#" pressed early must not end it at once): none is left for the next question.
- every step raises CallerGone once the caller hung up (BYE, CANCEL, no ACK).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

from edge_agent.ivr.port import CallerGone
from edge_agent.sip import g711
from edge_agent.sip.incoming_call import IncomingCall
from edge_agent.sip.pacer import Pacer, RtpStream
from edge_agent.sip.recording import RATE, Recording
from edge_agent.sip.rtp import RtpPacket

__all__ = ["SipCallerLine"]

RECORD_CHECK_S = 0.05  # how often a recording looks at the clock
_MASK32 = 0xFFFFFFFF


class SipCallerLine:
    """`CallerLine` for one `IncomingCall`, its audio through `pacer`."""

    def __init__(
        self, call: IncomingCall, pacer: Pacer, caller_number: str, caller_name: str | None
    ) -> None:
        self._call = call
        self._pacer = pacer
        self._number = caller_number
        self._name = caller_name
        # Where the last prompt's RTP clock stood, and when (loop time).
        self._sequence: int | None = None
        self._timestamp: int | None = None
        self._stopped_at = 0.0
        # Seconds the IVR itself made the caller wait (the PIN throttle): they do not
        # count against `Accept.pin_stage_s` (incoming.py pushes its timer back).
        self.pin_stage_extended = 0.0

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def from_tag(self) -> str:
        return self._call.invite.from_tag or ""

    @property
    def caller_number(self) -> str:
        return self._number

    @property
    def caller_name(self) -> str | None:
        return self._name

    def authenticated(self) -> None:
        """The caller passed the check (the PIN): the call no longer counts against its
        caller number's cap, and `Accept.pin_stage_s` no longer applies (incoming.py)."""
        self._call.authenticated.set()

    def pin_stage_extend(self, seconds: float) -> None:
        """The IVR makes the caller wait `seconds`: the PIN stage's limit moves back as far."""
        self.pin_stage_extended += max(0.0, seconds)

    def _check(self) -> None:
        if self._call.gone.is_set():
            raise CallerGone(self._call.ended_by or "gone")

    # ---------------------------------------------------------------- play

    async def play(self, pcm: bytes, *, barge_in: bool = True) -> None:
        self._check()
        call = self._call
        negotiated = call.negotiated
        if negotiated is None or len(pcm) < 2:
            return
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        if not call.media_safe():  # the SDP names a third host: its RTP first (finding 5)
            await call.media_ready()
            self._check()
        encode = g711.alaw_encode if negotiated.codec == "PCMA" else g711.ulaw_encode
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        timestamp = None
        if self._timestamp is not None:  # the clock ran on while nothing was sent
            elapsed = int((loop.time() - self._stopped_at) * RATE)
            timestamp = (self._timestamp + elapsed) & _MASK32
        stream = RtpStream(
            encode(pcm),
            negotiated.codec_pt,
            call.ssrc,
            call.send_rtp,
            done.set,
            sequence=self._sequence,
            timestamp=timestamp,
        )
        pressed = call.presses
        self._pacer.add(stream)
        try:
            waits: list[Awaitable[object]] = [done.wait(), call.gone.wait()]
            if barge_in:
                waits.append(call.pressed_after(pressed))
            await first(*waits)
        finally:
            self._pacer.remove(stream)
            self._sequence, self._timestamp = stream.sequence, stream.timestamp
            self._stopped_at = loop.time()
        self._check()

    # ---------------------------------------------------------------- keys

    async def read_digits(self, max_digits: int, wait_s: float, end: str | None) -> str:
        self._check()
        got = ""
        if max_digits <= 0:
            return got
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            key = await self._next_key(deadline - loop.time())
            if key is None:
                self._check()
                return got
            if end is not None and key == end:
                return got
            got += key
            if len(got) >= max_digits:
                return got
            deadline = loop.time() + wait_s

    async def _next_key(self, within_s: float) -> str | None:
        """The next key within `within_s` seconds, None without one (or when the caller is gone)."""
        digits = self._call.digits
        with contextlib.suppress(asyncio.QueueEmpty):
            return digits.get_nowait()
        if within_s <= 0 or self._call.gone.is_set():
            return None
        getter = asyncio.ensure_future(digits.get())
        gone = asyncio.ensure_future(self._call.gone.wait())
        try:
            await asyncio.wait(
                {getter, gone}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        return None

    def clear_digits(self) -> None:
        digits = self._call.digits
        while not digits.empty():
            digits.get_nowait()

    # ---------------------------------------------------------------- record

    async def record(
        self, max_seconds: float, silence_seconds: float, end_key: str, no_speech_s: float = 0.0
    ) -> bytes:
        self._check()
        call = self._call
        negotiated = call.negotiated
        loop = asyncio.get_running_loop()
        codec = negotiated.codec if negotiated is not None else "PCMU"
        recording = Recording(codec, int(max(0.0, max_seconds) * RATE))

        def heard(packet: RtpPacket) -> None:
            recording.feed(packet, loop.time())

        self.clear_digits()
        started = loop.time()
        call.audio = heard
        try:
            while True:
                now = loop.time()
                remaining = started + max_seconds - now
                if remaining <= 0 or recording.full:
                    break
                last = recording.last_speech
                if last is not None and now - last >= silence_seconds:
                    break
                if last is None and 0 < no_speech_s <= now - started:  # nobody speaks
                    break
                key = await self._next_key(min(remaining, RECORD_CHECK_S))
                if key == end_key:
                    break
                self._check()
        finally:
            call.audio = None
        return recording.pcm()

    async def hang_up(self) -> None:
        """Ends the call now; the BYE's transaction goes on in the background (a caller
        that never answers it must not hold the call's place 64 x T1: finding 2)."""
        call = self._call
        call.ua.background(call.hang_up())
        await asyncio.sleep(0)  # the call has ended once this returns


async def first(*waits: Awaitable[object]) -> None:
    """Returns when the first of `waits` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
