"""The pacer's behaviour: what is sent at which tick. Timing figures live in bench/rtp_pacing.py.

`Pacer.tick(now)` is driven with chosen times; a few tests run the real loop
and assert only what was sent, never how punctually.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest

from edge_agent.sip.pacer import FRAME, Pacer, RtpStream
from edge_agent.sip.rtp import RtpPacket

T0 = 1000.0
TICK = 0.020


class Phone:
    """Collects what a stream sends, parsed, and counts on_done calls."""

    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []
        self.done = 0
        self._waiting: dict[int, asyncio.Event] = {}

    def send(self, data: bytes) -> None:
        self.packets.append(RtpPacket.parse(data))
        if event := self._waiting.get(len(self.packets)):
            event.set()

    async def received(self, count: int) -> None:
        if len(self.packets) < count:
            event = self._waiting.setdefault(count, asyncio.Event())
            await asyncio.wait_for(event.wait(), 5)

    def on_done(self) -> None:
        self.done += 1


def audio(frames: float, first: int = 1) -> bytes:
    """Frames of PCMU whose bytes say their frame number (1, 2, ..., modulo 256)."""
    whole = int(frames)
    data = b"".join(bytes([(first + n) % 256]) * FRAME for n in range(whole))
    return data + bytes([(first + whole) % 256]) * round((frames - whole) * FRAME)


def stream(phone: Phone, frames: float, **kwargs) -> RtpStream:
    kwargs.setdefault("sequence", 65534)
    kwargs.setdefault("timestamp", 2**32 - 320)
    return RtpStream(audio(frames), 0, 0x1234, phone.send, phone.on_done, **kwargs)


def at(k: float) -> float:
    return T0 + k * TICK


def test_each_tick_sends_the_next_frame_with_sequence_and_timestamp_advanced():
    phone = Phone()
    pacer = Pacer()
    pacer.add(stream(phone, 3))
    for k in range(3):
        assert pacer.tick(at(k)) == 1
    assert [p.payload for p in phone.packets] == [bytes([n]) * FRAME for n in (1, 2, 3)]
    assert [p.sequence for p in phone.packets] == [65534, 65535, 0]  # wraps
    assert [p.timestamp for p in phone.packets] == [2**32 - 320, 2**32 - 160, 0]
    assert [p.marker for p in phone.packets] == [True, False, False]
    assert {(p.payload_type, p.ssrc) for p in phone.packets} == {(0, 0x1234)}


def test_nothing_is_sent_before_the_next_tick_is_due():
    phone = Phone()
    pacer = Pacer()
    pacer.add(stream(phone, 5))
    assert pacer.tick(at(0)) == 1
    assert pacer.tick(at(0.99)) == 0
    assert pacer.tick(at(1)) == 1
    assert len(phone.packets) == 2


def test_the_end_calls_on_done_once_and_the_stream_goes_quiet():
    phone = Phone()
    pacer = Pacer()
    rtp = stream(phone, 2)
    pacer.add(rtp)
    for k in range(6):
        pacer.tick(at(k))
    assert len(phone.packets) == 2
    assert phone.done == 1
    assert not rtp.playing
    assert rtp in pacer  # the call decides when its stream leaves


def test_a_partial_last_frame_is_padded_with_silence():
    phone = Phone()
    pacer = Pacer()
    pacer.add(stream(phone, 1.5))
    pacer.tick(at(0))
    pacer.tick(at(1))
    assert phone.packets[1].payload == b"\x02" * 80 + b"\xff" * 80
    assert phone.done == 1


def test_pcma_is_padded_with_its_own_silence():
    sent: list[bytes] = []
    rtp = RtpStream(b"\x01" * 100, 8, 1, sent.append)
    rtp.tick()
    assert RtpPacket.parse(sent[0]).payload == b"\x01" * 100 + b"\xd5" * 60


def test_empty_audio_is_done_at_the_first_tick_without_sending():
    phone = Phone()
    pacer = Pacer()
    pacer.add(stream(phone, 0))
    pacer.tick(at(0))
    assert (phone.packets, phone.done) == ([], 1)


def test_restart_after_the_end_plays_again_with_marker_and_the_clock_kept():
    phone = Phone()
    pacer = Pacer()
    rtp = stream(phone, 2, sequence=10, timestamp=0)
    pacer.add(rtp)
    for k in range(4):  # two frames sent, two quiet ticks
        pacer.tick(at(k))
    rtp.restart()
    for k in range(4, 7):
        pacer.tick(at(k))
    assert [p.sequence for p in phone.packets] == [10, 11, 12, 13]
    assert [p.timestamp for p in phone.packets] == [0, 160, 640, 800]
    assert [p.marker for p in phone.packets] == [True, False, True, False]
    assert [p.payload[0] for p in phone.packets] == [1, 2, 1, 2]
    assert phone.done == 2


def test_restart_while_playing_starts_over_at_the_next_tick():
    phone = Phone()
    pacer = Pacer()
    rtp = stream(phone, 5)
    pacer.add(rtp)
    pacer.tick(at(0))
    pacer.tick(at(1))
    rtp.restart()
    pacer.tick(at(2))
    assert [p.payload[0] for p in phone.packets] == [1, 2, 1]
    assert [p.marker for p in phone.packets] == [True, False, True]
    assert phone.done == 0


def test_a_removed_stream_sends_nothing_more_and_is_never_done():
    phone, other = Phone(), Phone()
    pacer = Pacer()
    rtp = stream(phone, 5)
    pacer.add(rtp)
    pacer.add(stream(other, 5))
    pacer.tick(at(0))
    pacer.remove(rtp)
    pacer.remove(rtp)  # twice is harmless
    for k in range(1, 8):
        pacer.tick(at(k))
    assert (len(phone.packets), phone.done) == (1, 0)
    assert (len(other.packets), other.done) == (5, 1)
    assert len(pacer) == 1


def test_a_stream_added_mid_way_starts_at_the_next_tick():
    early, late = Phone(), Phone()
    pacer = Pacer()
    pacer.add(stream(early, 5))
    pacer.tick(at(0))
    pacer.tick(at(1))
    pacer.add(stream(late, 5))
    assert late.packets == []
    pacer.tick(at(2))
    assert [len(early.packets), len(late.packets)] == [3, 1]
    assert late.packets[0].marker
    assert late.packets[0].payload[0] == 1


def test_a_blocked_loop_is_caught_up_with_the_missed_packets_at_once():
    phone = Phone()
    pacer = Pacer()
    pacer.add(stream(phone, 10, timestamp=0))
    pacer.tick(at(0))
    assert pacer.tick(at(3.5)) == 3  # ticks 1, 2 and 3 were missed and are sent now
    assert [p.timestamp for p in phone.packets] == [0, 160, 320, 480]
    assert [p.payload[0] for p in phone.packets] == [1, 2, 3, 4]
    assert pacer.caught_up == 2
    assert [round(s / TICK, 3) for s in pacer.lateness] == [0, 2.5, 1.5, 0.5]
    assert pacer.tick(at(4)) == 1  # and then back on the original schedule


def test_a_stream_added_while_the_loop_was_blocked_joins_only_the_last_missed_tick():
    old, new = Phone(), Phone()
    pacer = Pacer()
    pacer.add(stream(old, 10))
    pacer.tick(at(0))
    pacer.add(stream(new, 10))
    pacer.tick(at(3))
    assert (len(old.packets), len(new.packets)) == (4, 1)


def test_a_gap_beyond_max_catch_up_is_skipped_with_the_clock_running(caplog):
    phone = Phone()
    pacer = Pacer(max_catch_up=3)
    pacer.add(stream(phone, 10, timestamp=0))
    pacer.tick(at(0))
    with caplog.at_level(logging.WARNING, logger="edge_agent.sip.pacer"):
        assert pacer.tick(at(10)) == 3  # ticks 1-10 due: 1-7 skipped, 8-10 sent
    assert [p.timestamp // FRAME for p in phone.packets] == [0, 8, 9, 10]
    assert [p.payload[0] for p in phone.packets] == [1, 2, 3, 4]  # no audio lost
    assert [p.marker for p in phone.packets] == [True, True, False, False]
    assert [p.sequence for p in phone.packets] == [65534, 65535, 0, 1]
    assert pacer.skipped == 7
    assert "RTP pacer blocked for 180 ms: 7 ticks skipped, 3 sent at once" in caplog.text


def test_a_stream_whose_send_breaks_is_removed_and_the_others_go_on(caplog):
    phone = Phone()

    def broken(data: bytes) -> None:
        raise RuntimeError("socket object gone")

    pacer = Pacer()
    bad = RtpStream(audio(5), 0, 0xBAD, broken)
    pacer.add(bad)
    pacer.add(stream(phone, 5))
    with caplog.at_level(logging.ERROR, logger="edge_agent.sip.pacer"):
        pacer.tick(at(0))
        pacer.tick(at(1))
    assert bad not in pacer
    assert len(phone.packets) == 2
    assert "RTP stream 00000bad failed; removed" in caplog.text


def test_a_packet_the_socket_refuses_is_counted_lost_and_the_stream_goes_on():
    phone = Phone()
    refusals = iter([OSError("send buffer full")])

    def flaky(data: bytes) -> None:
        failure = next(refusals, None)
        if failure is not None:
            raise failure
        phone.send(data)

    pacer = Pacer()
    flaky_stream = RtpStream(audio(3), 0, 0x1234, flaky, sequence=10)
    pacer.add(flaky_stream)
    for k in range(3):
        pacer.tick(at(k))
    assert flaky_stream in pacer
    assert pacer.dropped == 1
    # The lost packet keeps its sequence number: the receiver sees the gap.
    assert [p.sequence for p in phone.packets] == [11, 12]


def test_a_failing_on_done_is_logged_and_the_pacer_goes_on(caplog):
    sent: list[bytes] = []

    def on_done() -> None:
        raise RuntimeError("listener gone")

    pacer = Pacer()
    rtp = RtpStream(audio(1), 0, 7, sent.append, on_done)
    pacer.add(rtp)
    with caplog.at_level(logging.ERROR, logger="edge_agent.sip.pacer"):
        pacer.tick(at(0))
    assert rtp in pacer
    assert "on_done of RTP stream 00000007 failed" in caplog.text


def test_on_done_comes_after_the_last_packet_was_sent():
    phone = Phone()
    seen: list[int] = []
    pacer = Pacer()
    pacer.add(RtpStream(audio(2), 0, 1, phone.send, lambda: seen.append(len(phone.packets))))
    pacer.tick(at(0))
    pacer.tick(at(1))
    assert seen == [2]


def test_on_done_may_remove_streams_during_the_tick():
    first, second = Phone(), Phone()
    pacer = Pacer()
    later = stream(second, 5)

    def hang_up() -> None:
        pacer.remove(later)

    pacer.add(RtpStream(audio(1), 0, 1, first.send, hang_up))
    pacer.add(later)
    pacer.tick(at(0))  # the tick's packets were all due: sent before the callbacks run
    pacer.tick(at(1))
    assert (len(first.packets), len(second.packets)) == (1, 1)
    assert later not in pacer


def test_random_initial_sequence_and_timestamp_by_default():
    streams = [RtpStream(b"", 0, 1, print) for _ in range(8)]
    assert len({(s.sequence, s.timestamp) for s in streams}) > 1


def test_it_refuses_nonsense_settings():
    with pytest.raises(ValueError, match="interval > 0"):
        Pacer(interval=0)
    with pytest.raises(ValueError, match=r"^RTP payload type 200 is not in 0-127$"):
        RtpStream(b"", 200, 1, print)


@pytest.mark.parametrize("lanes", [1, 4])
async def test_on_the_real_loop_every_stream_plays_to_its_end_once(lanes: int):
    pacer = Pacer(interval=0.002 * lanes, lanes=lanes)
    phones = [Phone() for _ in range(6)]
    done = [asyncio.Event() for _ in phones]
    for n, (phone, event) in enumerate(zip(phones, done, strict=True)):

        def finished(phone: Phone = phone, event: asyncio.Event = event) -> None:
            phone.on_done()
            event.set()

        pacer.add(RtpStream(audio(5 + n), 0, n, phone.send, finished))
    task = pacer.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in done)), 5)
    finally:
        pacer.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [len(p.packets) for p in phones] == [5, 6, 7, 8, 9, 10]
    assert [p.done for p in phones] == [1] * 6
    for phone in phones:
        steps = {
            (b.sequence - a.sequence) & 0xFFFF
            for a, b in zip(phone.packets, phone.packets[1:], strict=False)
        }
        assert steps == {1}


async def test_on_the_real_loop_a_blocked_loop_loses_no_packet():
    pacer = Pacer(interval=0.005, max_catch_up=1000)  # never skip, even on a loaded machine
    phone = Phone()
    rtp = RtpStream(audio(1000), 0, 1, phone.send, sequence=0, timestamp=0)
    pacer.add(rtp)
    pacer.start()
    try:
        await phone.received(3)
        time.sleep(0.030)  # noqa: ASYNC251 -- the point: block the loop for 6 ticks
        await phone.received(20)
    finally:
        pacer.close()
    assert pacer.caught_up >= 2
    # Every tick's packet was sent: timestamps are consecutive frames, none missing.
    assert [p.timestamp for p in phone.packets] == [FRAME * n for n in range(len(phone.packets))]


async def test_an_idle_pacer_sends_nothing_until_a_stream_is_added():
    pacer = Pacer(interval=0.002)
    task = pacer.start()
    await asyncio.sleep(0.02)
    assert pacer.ticks == 0
    phone = Phone()
    finished = asyncio.Event()
    pacer.add(RtpStream(audio(2), 0, 1, phone.send, finished.set))
    await asyncio.wait_for(finished.wait(), 5)
    pacer.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(phone.packets) == 2


# --- lanes: the interval cut into slots, each stream in one lane -------------------------


def slot(k: float, lanes: int) -> float:
    return T0 + k * TICK / lanes


def test_lanes_spread_the_streams_and_each_stream_keeps_its_slot_every_interval():
    pacer = Pacer(lanes=4)
    phones = [Phone() for _ in range(8)]
    for n, phone in enumerate(phones):
        pacer.add(RtpStream(audio(3), 0, n, phone.send, sequence=0, timestamp=0))
    sent_at: dict[int, list[int]] = {n: [] for n in range(8)}
    for j in range(12):  # three intervals of four slots
        before = [len(p.packets) for p in phones]
        assert pacer.tick(slot(j, 4)) == 1
        for n, phone in enumerate(phones):
            if len(phone.packets) > before[n]:
                sent_at[n].append(j)
    # Two streams per lane, in the order they came; each sent every fourth slot.
    assert [sent_at[n][0] for n in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    for slots in sent_at.values():
        assert [b - a for a, b in itertools.pairwise(slots)] == [4, 4]
    assert all(len(p.packets) == 3 for p in phones)
    assert all([q.timestamp for q in p.packets] == [0, 160, 320] for p in phones)


def test_a_stream_added_later_joins_the_least_busy_lane():
    pacer = Pacer(lanes=2)
    first, second, third = Phone(), Phone(), Phone()
    a = stream(first, 5)
    pacer.add(a)
    pacer.add(stream(second, 5))
    pacer.remove(a)  # lane 0 is empty now
    pacer.add(stream(third, 5))
    pacer.tick(slot(0, 2))
    assert (len(first.packets), len(second.packets), len(third.packets)) == (0, 0, 1)
    pacer.tick(slot(1, 2))
    assert (len(second.packets), len(third.packets)) == (1, 1)


def test_with_lanes_a_long_block_skips_whole_intervals_for_every_lane_alike():
    pacer = Pacer(lanes=4, max_catch_up=2)
    phones = [Phone() for _ in range(4)]
    for n, phone in enumerate(phones):
        pacer.add(RtpStream(audio(20), 0, n, phone.send, sequence=0, timestamp=0))
    for j in range(4):
        pacer.tick(slot(j, 4))
    # Blocked for 10 intervals: slots 4 .. 43 are due; the last 2 intervals (8 slots) are
    # sent, 32 slots (8 per lane) skipped.
    assert pacer.tick(slot(43, 4)) == 8
    assert pacer.skipped == 32
    for phone in phones:
        stamps = [p.timestamp for p in phone.packets]
        assert stamps == [0, 160 * 9, 160 * 10]  # 8 ticks skipped, then 2 sent
        assert [p.marker for p in phone.packets] == [True, True, False]


def test_lanes_must_be_at_least_one():
    with pytest.raises(ValueError, match="lanes >= 1"):
        Pacer(lanes=0)


async def test_the_kernel_alarm_never_wakes_before_its_time():
    from edge_agent.sip.alarms import TimerfdAlarm, clock

    alarm = TimerfdAlarm.create(asyncio.get_running_loop())
    if alarm is None:
        pytest.skip("no timerfd on this platform")
    try:
        for delay in (0.0, 0.001, 0.003):
            when = clock() + delay
            await alarm.wait_until(when)
            assert clock() >= when
    finally:
        alarm.close()


def test_slots_of_empty_lanes_are_neither_sampled_nor_counted_as_catching_up():
    pacer = Pacer(lanes=4)
    phone = Phone()
    pacer.add(stream(phone, 10))  # lane 0; lanes 1-3 stay empty
    for k in range(10):
        pacer.tick(slot(4 * k, 4))  # woken at lane 0's slot only, on time
    assert len(phone.packets) == 10
    assert pacer.caught_up == 0
    assert list(pacer.lateness) == [0.0] * 10
