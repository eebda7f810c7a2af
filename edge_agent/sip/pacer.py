"""One scheduler that sends every call's RTP every 20 ms.

A task or a timer per call would wake the event loop hundreds of times per
interval at slightly different moments; one `Pacer` wakes once per slot (one
interval, or with `lanes` a fraction of it, see `Pacer`), builds one packet for
each `RtpStream` of the slot, then sends them all in one run (with no
Python work between the system calls, which bench/rtp_pacing.py measured as
cheaper than building and sending in turn) and only then calls the `on_done`
callbacks of the streams that sent their last packet.

Timing. Slot k is due at ``start + k * interval / lanes`` (computed, never
accumulated, so there is no drift). asyncio's timers wake up late by up to a
millisecond (epoll's timeout is in milliseconds, rounded up) plus scheduling
noise. The pacer therefore has an alarm (`alarms.make_alarm`) wake the loop
0.3 ms before the slot: on Linux a timerfd (through ctypes: Python 3.11 has no
os.timerfd), to the microsecond; on Windows, where asyncio's timers are coarser
than a slot, a thread that sleeps until then, with the system timer raised to
1 ms while streams run (`alarms.TimerResolution`). The rest is waited with
`time.sleep` (a `clock_nanosleep`, precise to tens of microseconds; on Windows
a high-resolution waitable timer). Elsewhere it asks the loop to wake it
`early` seconds (2 ms) before and sleeps the rest. That sleep blocks the loop
for at most about 0.3 ms (or `early`) per slot; it is cheaper than spinning on
``asyncio.sleep(0)`` and nothing else on the loop is as time-critical as the
audio. Times are `alarms.clock()` seconds (QueryPerformanceCounter on Windows).

Catch-up. When the loop was blocked past one or more ticks (a slow callback, a
GC pause), the missed ticks are sent at once, in order, for every stream: the
RTP timestamps stay on the clock and the receiver's jitter buffer absorbs the
burst, which is better than shifting every later packet (a drift the receiver
would have to correct by stretching audio). A gap longer than `max_catch_up`
ticks would overflow any jitter buffer anyway, so the older ticks beyond it are
skipped: the streams' RTP clocks advance over them without sending, their audio
resumes where it stopped, and the next packet carries the marker bit (a new
talkspurt, RFC 3551 4.1) so the receiver resynchronises.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable

from edge_agent.sip import alarms

__all__ = ["FRAME", "Pacer", "RtpStream"]

log = logging.getLogger(__name__)

FRAME = 160  # samples, and G.711 bytes, in 20 ms at 8 kHz
_pack = struct.Struct("!BBHII").pack  # RFC 3550 5.1 fixed header, no CSRC
_SILENCE = {0: 0xFF, 8: 0xD5}  # PCMU and PCMA codes of a zero sample
_MASK32 = 0xFFFFFFFF


class RtpStream:
    """One call's announcement as RTP: one packet of `frame` bytes per pacer tick.

    `audio` is the whole announcement already encoded (G.711: one byte per
    sample); a last partial frame is padded with silence for PCMU (0) and PCMA
    (8). `send` gets each packet's bytes, e.g. a connected datagram
    transport's ``sendto``. When the last packet has been sent, `on_done` is
    called once and the stream goes quiet, although the RTP clock keeps
    running while it stays in the pacer, so that a `restart` (the member
    pressed 9) continues the timestamps where wall time has taken them.
    Sequence and timestamp start at random values (RFC 3550 5.1) unless given.
    """

    def __init__(
        self,
        audio: bytes,
        payload_type: int,
        ssrc: int,
        send: Callable[[bytes], object],
        on_done: Callable[[], object] | None = None,
        *,
        sequence: int | None = None,
        timestamp: int | None = None,
        frame: int = FRAME,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"RTP payload type {payload_type} is not in 0-127")
        silence = _SILENCE.get(payload_type)
        if silence is not None and len(audio) % frame:
            audio += bytes([silence]) * (frame - len(audio) % frame)
        self._audio = bytes(audio)
        self._payload_type = payload_type
        self.ssrc = ssrc & _MASK32
        self._send = send
        self._on_done = on_done
        self._frame = frame
        self._sequence = secrets.randbits(16) if sequence is None else sequence & 0xFFFF
        self._timestamp = secrets.randbits(32) if timestamp is None else timestamp & _MASK32
        self._position = 0
        self._marker = True
        self._playing = True
        self._ended = False  # the last frame was built; on_done is due once it is sent
        self.packets = 0  # sent, for RTCP sender reports (RFC 3550 6.4.1)
        self.octets = 0  # payload bytes sent

    @property
    def sequence(self) -> int:
        """The sequence number of the next packet."""
        return self._sequence

    @property
    def timestamp(self) -> int:
        """The RTP timestamp of the next tick."""
        return self._timestamp

    @property
    def playing(self) -> bool:
        """False once the announcement has been sent to its end (until `restart`)."""
        return self._playing

    def restart(self) -> None:
        """Play from the start at the next tick, with the marker bit; `on_done` again at the end."""
        self._position = 0
        self._marker = True
        self._playing = True

    def pause(self) -> None:
        """Send nothing from the next tick on (the call is on hold), with no `on_done`; the
        RTP clock runs on while the stream stays in the pacer, and `restart` plays again."""
        self._playing = False

    def tick(self) -> None:
        """One interval, for a stream sent without a pacer: send the next frame (if
        playing), advance the RTP clock, and call `on_done` after the last frame."""
        packet = self._advance()
        if packet is not None:
            self._send(packet)
        if self._ended:
            self._settle()

    def _advance(self) -> bytes | None:
        """Move one interval on: the packet due now, or None while quiet; `_ended` after the
        last one, for `_settle` once it has been sent."""
        # Called for every call 50 times a second: locals, one pack, no send here.
        frame, timestamp = self._frame, self._timestamp
        self._timestamp = (timestamp + frame) & _MASK32
        if not self._playing:
            return None
        audio, position = self._audio, self._position
        packet = None
        if position < len(audio):
            payload = audio[position : position + frame]
            if self._marker:
                second, self._marker = self._payload_type | 0x80, False
            else:
                second = self._payload_type
            sequence = self._sequence
            packet = _pack(0x80, second, sequence, timestamp, self.ssrc) + payload
            self._sequence = (sequence + 1) & 0xFFFF
            self.packets += 1
            self.octets += len(payload)
            position += frame
            self._position = position
        if position >= len(audio):
            self._playing = False
            self._ended = True
        return packet

    def skip(self, ticks: int) -> None:
        """Let `ticks` intervals pass unsent: the clock advances, the audio waits, marker next."""
        self._timestamp = (self._timestamp + ticks * self._frame) & _MASK32
        self._marker = True

    def _settle(self) -> None:
        self._ended = False
        if self._on_done is None:
            return
        try:
            self._on_done()
        except Exception:  # the callback's failure is the caller's, not this stream's
            log.exception("on_done of RTP stream %08x failed", self.ssrc)


class Pacer:
    """Sends one packet of every added `RtpStream` per `interval` (see the module text).

    `run()` (or `start()`, a task on `loop` or else the running loop) drives
    it until `close()`; `tick(now)` is the whole sending logic for a given
    `alarms.clock()` time, which tests call directly.

    Lanes. With `lanes` > 1 the interval is cut into that many slots, slot j due
    at ``start + j * interval / lanes``; each stream joins the least busy lane
    and is sent in that lane's slot every interval. 500 streams in 4 lanes are
    four bursts of 125 a 5 ms apart instead of one of 500: a stream's packet
    leaves at the same offset every time, and a burst short enough that its
    length hardly varies keeps each stream's spacing close to 20 ms.

    `lateness` keeps the most recent samples of how late each slot was sent
    against its ideal time, in seconds; `caught_up` counts slots sent late by
    more than one slot and `skipped` the slots dropped beyond `max_catch_up`
    intervals; `dropped` the packets a socket refused.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        interval: float = 0.020,
        *,
        lanes: int = 1,
        early: float = 0.002,
        max_catch_up: int = 10,
        samples: int = 30_000,
    ) -> None:
        if interval <= 0 or early < 0 or max_catch_up < 1 or lanes < 1:
            raise ValueError(
                "interval > 0, early >= 0, max_catch_up >= 1 and lanes >= 1 are required"
            )
        self._loop = loop
        self.interval = interval
        self.lanes = lanes
        self._slot = interval / lanes
        self.early = early
        self.max_catch_up = max_catch_up
        self._lanes: list[dict[RtpStream, None]] = [{} for _ in range(lanes)]  # ordered sets
        self._lane_of: dict[RtpStream, int] = {}
        self._joining: set[RtpStream] = set()
        self._start: float | None = None
        self._next = 0  # index of the next slot to send
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._alarm: alarms.Alarm | None = None
        self.resolution = alarms.TimerResolution()
        self.lateness: deque[float] = deque(maxlen=samples)
        self.ticks = 0
        self.caught_up = 0
        self.skipped = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._lane_of)

    def __contains__(self, stream: object) -> bool:
        return stream in self._lane_of

    def add(self, stream: RtpStream) -> None:
        """Send `stream` from its lane's next slot on (adding it twice changes nothing)."""
        if stream not in self._lane_of:
            lane = min(range(self.lanes), key=lambda n: len(self._lanes[n]))
            self._lanes[lane][stream] = None
            self._lane_of[stream] = lane
            self._joining.add(stream)
            self._wake.set()

    def remove(self, stream: RtpStream) -> None:
        """Stop sending `stream` (also when called from a callback during a tick)."""
        lane = self._lane_of.pop(stream, None)
        if lane is not None:
            self._lanes[lane].pop(stream, None)
        self._joining.discard(stream)

    def tick(self, now: float) -> int:
        """Send every slot due at `alarms.clock()` time `now`; the number of slots sent."""
        if self._start is None:
            self._start, self._next = now, 0
        # The epsilon keeps a slot due at exactly its ideal time despite float rounding.
        due = int((now - self._start) / self._slot + 1e-9) + 1 - self._next
        if due <= 0:
            return 0
        limit = self.max_catch_up * self.lanes
        if due > limit:
            skip = due - limit
            log.warning(
                "RTP pacer blocked for %.0f ms: %d ticks skipped, %d sent at once",
                1000 * (now - self._ideal(self._next)),
                skip,
                limit,
            )
            for stream, lane in tuple(self._lane_of.items()):
                if stream not in self._joining:
                    stream.skip(self._slots_of_lane(self._next, skip, lane))
            self._next += skip
            self.skipped += skip
            due = limit
        joining, self._joining = self._joining, set()
        lanes = self.lanes
        sent = 0
        for n in range(due):
            slot = self._next
            self._next += 1
            members = self._lanes[slot % lanes]
            if not members:
                continue  # an empty lane's slot is not waited for: no sample, no catch-up
            self.lateness.append(now - self._ideal(slot))
            sent += 1
            # A new stream joins at its lane's last slot of this call.
            late = joining if due - n > lanes else ()
            self._send_one([stream for stream in members if stream not in late])
        self.ticks += due
        self.caught_up += max(0, sent - 1)
        return due

    def _slots_of_lane(self, first: int, count: int, lane: int) -> int:
        """How many of the slots first .. first + count - 1 belong to `lane`."""
        whole, rest = divmod(count, self.lanes)
        return whole + (1 if (lane - first) % self.lanes < rest else 0)

    def _send_one(self, streams: list[RtpStream]) -> None:
        """One slot: all packets built first, then all sent, then the callbacks. Sending
        in one run, with no Python work between the system calls, is measurably cheaper
        (bench/rtp_pacing.py) and keeps the burst short."""
        # Two lists, not a list of pairs: no tuple per packet for the cyclic GC to count
        # (zip reuses its tuple), so a tick does not bring the next collection nearer.
        packets = [stream._advance() for stream in streams]
        lane_of = self._lane_of
        for stream, packet in zip(streams, packets, strict=True):
            if packet is not None and stream in lane_of:
                try:
                    stream._send(packet)
                except OSError:  # a full send buffer or an ICMP error: a lost packet
                    self.dropped += 1
                except Exception:  # one broken call must not silence the others
                    log.exception("RTP stream %08x failed; removed", stream.ssrc)
                    self.remove(stream)
        for stream in streams:
            if stream._ended:
                stream._settle()

    def _ideal(self, slot: int) -> float:
        assert self._start is not None
        return self._start + slot * self._slot

    def _next_busy_slot(self) -> int:
        """The next slot whose lane has a stream: empty lanes cost no wake-up."""
        for slot in range(self._next, self._next + self.lanes):
            if self._lanes[slot % self.lanes]:
                return slot
        return self._next

    async def run(self) -> None:
        """Send until `close()`; idle (no timer at all, the system timer at its default
        on Windows) while no stream is added."""
        clock = alarms.clock
        alarm = self._alarm = alarms.make_alarm(asyncio.get_running_loop())
        try:
            while not self._closed:
                if not self._lane_of:
                    self.resolution.end()
                    self._start = None  # the next stream starts a new schedule
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self.resolution.begin()
                if self._start is None:
                    self._start, self._next = clock(), 0
                target = self._ideal(self._next_busy_slot())
                if alarm is not None:
                    # The alarm wakes the loop within tens of microseconds; the short
                    # rest is slept so the slot leaves on time.
                    await alarm.wait_until(target - alarms.ALARM_EARLY)
                else:
                    # Always yield once, even when behind, so the loop is never starved.
                    await asyncio.sleep(max(0.0, target - clock() - self.early))
                remaining = target - clock()
                if remaining > 0:
                    time.sleep(remaining)  # noqa: ASYNC251 -- at most `early`; see the module text
                if self._lane_of and not self._closed:
                    self.tick(clock())
        finally:
            self.resolution.end()
            if alarm is not None:
                alarm.close()

    def start(self) -> asyncio.Task[None]:
        """Run on the loop (the one given, else the running one) as a task."""
        if self._task is None or self._task.done():
            loop = self._loop or asyncio.get_running_loop()
            self._task = loop.create_task(self.run(), name="rtp-pacer")
        return self._task

    def close(self) -> None:
        """Stop sending; streams stay added but receive no more ticks."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
