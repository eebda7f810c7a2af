"""What wakes the RTP pacer on time, per system (docs/decisions/windows-portability.md).

- Linux: a timerfd on the loop (`TimerfdAlarm`) wakes it to the microsecond, where
  asyncio's timers round epoll's timeout up to the next millisecond.
- Windows: asyncio's timers cannot pace 20 ms there. Before Python 3.13 the loop's
  clock is ``time.monotonic`` = GetTickCount64, which moves in 15.6 ms steps, and a
  timer fires when it is due within one such step, so up to 15.6 ms early; the
  proactor's wait itself ends on the system timer's tick (15.6 ms by default). A
  thread (`ThreadAlarm`) sleeps until the slot instead (``time.sleep`` uses a
  high-resolution waitable timer since Python 3.11) and wakes the loop with
  ``call_soon_threadsafe`` (an I/O completion on the proactor). While streams run,
  `TimerResolution` raises the system timer to 1 ms (``timeBeginPeriod(1)``) for the
  Windows versions without high-resolution timers and for the loop's own waits.
- Elsewhere: no alarm; the pacer asks asyncio to wake it `early` and sleeps the rest.

All times are `clock()` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from edge_agent import platforms

log = logging.getLogger(__name__)

# QueryPerformanceCounter on Windows (sub-microsecond), CLOCK_MONOTONIC on Linux (the
# timerfd's clock). Not time.monotonic: GetTickCount64 on Windows until Python 3.13.
clock = time.perf_counter
ALARM_EARLY = 0.0003  # an alarm fires this much before the slot; the pacer sleeps it off
TIMER_PERIOD_MS = 1
TIMERR_NOERROR = 0


class Alarm(Protocol):
    async def wait_until(self, when: float) -> None: ...

    def close(self) -> None: ...


def make_alarm(loop: asyncio.AbstractEventLoop) -> Alarm | None:
    """The alarm for this system and loop; None where the pacer relies on asyncio."""
    if platforms.on_windows():
        return ThreadAlarm(loop)
    return TimerfdAlarm.create(loop)


class TimerfdAlarm:
    """A Linux timerfd on the event loop: wakes the loop at an absolute `clock()` time
    to the microsecond."""

    def __init__(
        self, fd: int, settime: Callable[..., int], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._fd = fd
        self._settime = settime
        self._spec = _ITimerSpec()
        self._fired: asyncio.Future[None] | None = None
        self._loop = loop
        self._stop_reading: Callable[[], object] = lambda: None

    @classmethod
    def create(cls, loop: asyncio.AbstractEventLoop) -> TimerfdAlarm | None:
        """None off Linux, on a loop without readers, or without timerfd in the C library."""
        if not platforms.on_linux() or not platforms.loop_has_readers(loop):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            create, settime = libc.timerfd_create, libc.timerfd_settime
        except (OSError, AttributeError):
            return None
        create.restype = ctypes.c_int
        create.argtypes = [ctypes.c_int, ctypes.c_int]
        settime.restype = ctypes.c_int
        settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        fd = create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        alarm = cls(fd, settime, loop)
        loop.add_reader(fd, alarm._on_fire)
        alarm._stop_reading = lambda: loop.remove_reader(fd)
        return alarm

    async def wait_until(self, when: float) -> None:
        """Returns at `when` or soon after (at once when it has passed, after one pass
        of the loop)."""
        seconds = max(when, 1e-6)
        self._spec.it_value.tv_sec = int(seconds)
        self._spec.it_value.tv_nsec = int((seconds % 1) * 1e9)
        fired = self._fired = self._loop.create_future()
        if self._settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            self._fired = None
            await asyncio.sleep(max(0.0, when - clock()))
            return
        try:
            await fired
        finally:
            if self._fired is fired:  # not a newer wait's
                self._fired = None

    def _on_fire(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._fd, 8)
        if self._fired is not None and not self._fired.done():
            self._fired.set_result(None)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, ValueError):
            self._stop_reading()
        os.close(self._fd)


class ThreadAlarm:
    """A thread that sleeps until the given `clock()` time, then wakes the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: tuple[int, float] | None = None  # (generation, when), under _changed
        self._changed = threading.Condition()
        self._generation = 0
        self._fired: asyncio.Future[None] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="rtp-pacer-alarm", daemon=True)
        self._thread.start()

    async def wait_until(self, when: float) -> None:
        """Returns at `when` or soon after; at once (after a loop pass) when it has passed."""
        fired = self._fired = self._loop.create_future()
        with self._changed:
            self._generation += 1
            self._due = (self._generation, when)
            self._changed.notify()
        try:
            await fired
        finally:
            if self._fired is fired:  # not a newer wait's
                self._fired = None

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._due is None and not self._closed:
                    self._changed.wait()
                if self._closed or self._due is None:
                    return
                generation, when = self._due
                self._due = None
            delay = when - clock()
            if delay > 0:
                time.sleep(delay)
            try:
                self._loop.call_soon_threadsafe(self._fire, generation)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return

    def _fire(self, generation: int) -> None:
        # A wait given up (the pacer closed) must not end the next one early.
        fired = self._fired
        if generation == self._generation and fired is not None and not fired.done():
            fired.set_result(None)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()


class TimerResolution:
    """Windows' system timer at 1 ms while held (``timeBeginPeriod(1)``, undone by
    ``timeEndPeriod(1)``); nothing elsewhere. `begin` and `end` may be called any
    number of times: Windows gets one begin and one matching end."""

    def __init__(self) -> None:
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def begin(self) -> None:
        if self._held or not platforms.on_windows():
            return
        result = winmm().timeBeginPeriod(TIMER_PERIOD_MS)
        if result == TIMERR_NOERROR:
            self._held = True
        else:
            log.warning("timeBeginPeriod(%d) failed (%d): RTP may be sent late", 1, result)

    def end(self) -> None:
        if self._held:
            self._held = False
            winmm().timeEndPeriod(TIMER_PERIOD_MS)


@functools.cache
def winmm() -> Any:
    """Windows' multimedia timer library, loaded once (tests put a fake here). Asks
    ctypes, not the platform check: a test that patches that without this fails here."""
    load = getattr(ctypes, "WinDLL", None)
    if load is None:
        raise OSError("winmm.dll is a part of Windows")
    return load("winmm")


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


_TFD_TIMER_ABSTIME = 1
