"""The pacer's Windows branch, run here with the platform check patched and winmm faked:
a thread alarm wakes it, and the system timer is at 1 ms exactly while streams run."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edge_agent import platforms
from edge_agent.sip import alarms
from edge_agent.sip.pacer import Pacer, RtpStream
from tests.agent.windows_fakes import FakeWinmm
from tests.sip_unit.test_pacer import Phone, audio


@pytest.fixture
def winmm(monkeypatch: pytest.MonkeyPatch) -> FakeWinmm:
    fake = FakeWinmm()
    monkeypatch.setattr(platforms, "on_windows", lambda: True)
    monkeypatch.setattr(alarms, "winmm", lambda: fake)
    return fake


async def play(pacer: Pacer, frames: int) -> Phone:
    """One stream to its end, then out of the pacer (as a call does when it ends)."""
    phone = Phone()
    finished = asyncio.Event()
    stream: RtpStream

    def done() -> None:
        pacer.remove(stream)
        finished.set()

    stream = RtpStream(audio(frames), 0, 1, phone.send, done)
    pacer.add(stream)
    await asyncio.wait_for(finished.wait(), 5)
    return phone


async def settle(pacer: Pacer) -> None:
    """Lets the pacer's task see that no stream is left."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_on_windows_the_timer_is_at_1_ms_only_while_streams_run(winmm: FakeWinmm) -> None:
    pacer = Pacer(interval=0.004)
    task = pacer.start()
    await asyncio.sleep(0.02)
    assert winmm.calls == []  # idle: the system keeps its default

    first = await play(pacer, 4)
    await settle(pacer)
    assert winmm.calls == [("begin", 1), ("end", 1)]
    assert not pacer.resolution.held

    second = await play(pacer, 3)
    await settle(pacer)
    pacer.close()
    await asyncio.gather(task, return_exceptions=True)

    assert winmm.calls == [("begin", 1), ("end", 1)] * 2
    assert (len(first.packets), len(second.packets)) == (4, 3)


async def test_on_windows_a_pacer_closed_while_sending_gives_the_timer_back(
    winmm: FakeWinmm,
) -> None:
    pacer = Pacer(interval=0.004)
    phone = Phone()
    pacer.add(RtpStream(audio(1000), 0, 1, phone.send))
    task = pacer.start()
    await phone.received(3)
    assert winmm.raised() == 1

    pacer.close()
    await asyncio.gather(task, return_exceptions=True)

    assert winmm.calls == [("begin", 1), ("end", 1)]


async def test_on_windows_a_thread_alarm_wakes_the_pacer_for_every_packet(
    winmm: FakeWinmm,
) -> None:
    pacer = Pacer(interval=0.004, lanes=2)
    task = pacer.start()
    phones = await asyncio.gather(*(play(pacer, 5 + n) for n in range(4)))
    alarm = pacer._alarm
    pacer.close()
    await asyncio.gather(task, return_exceptions=True)

    assert isinstance(alarm, alarms.ThreadAlarm)
    assert [len(p.packets) for p in phones] == [5, 6, 7, 8]
    for phone in phones:
        steps = {
            (b.sequence - a.sequence) & 0xFFFF
            for a, b in zip(phone.packets, phone.packets[1:], strict=False)
        }
        assert steps == {1}


async def test_the_thread_alarm_never_wakes_before_its_time() -> None:
    alarm = alarms.ThreadAlarm(asyncio.get_running_loop())
    try:
        for delay in (0.0, 0.001, 0.003, -0.01):
            when = alarms.clock() + delay
            await alarm.wait_until(when)
            assert alarms.clock() >= when
    finally:
        alarm.close()


async def test_a_given_up_wait_does_not_end_the_next_one_early() -> None:
    alarm = alarms.ThreadAlarm(asyncio.get_running_loop())
    try:
        abandoned = asyncio.create_task(alarm.wait_until(alarms.clock() + 0.01))
        await asyncio.sleep(0)
        abandoned.cancel()
        when = alarms.clock() + 0.05
        await alarm.wait_until(when)  # the abandoned wait fires meanwhile: ignored
        assert alarms.clock() >= when
    finally:
        alarm.close()


def test_a_refused_timer_resolution_is_logged_and_never_ended(
    winmm: FakeWinmm, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(winmm, "timeBeginPeriod", lambda period: 97)  # TIMERR_NOCANDO
    resolution = alarms.TimerResolution()

    with caplog.at_level(logging.WARNING):
        resolution.begin()
        resolution.end()

    assert not resolution.held and winmm.calls == []
    assert "timeBeginPeriod(1) failed (97)" in caplog.text


def test_elsewhere_the_timer_resolution_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_winmm() -> None:
        raise AssertionError("winmm used off Windows")

    monkeypatch.setattr(alarms, "winmm", no_winmm)
    resolution = alarms.TimerResolution()
    resolution.begin()
    resolution.end()
    assert not resolution.held


async def test_on_linux_the_pacer_keeps_its_kernel_alarm() -> None:
    if not platforms.on_linux():
        pytest.skip("timerfd is Linux's")
    alarm = alarms.make_alarm(asyncio.get_running_loop())
    try:
        assert isinstance(alarm, alarms.TimerfdAlarm)
    finally:
        assert alarm is not None
        alarm.close()
