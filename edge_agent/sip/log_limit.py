"""Repeated log lines, limited: at most N per key per interval, then one line that says
how many similar ones were left out.

A peer can make the agent log once per connection or per message; thousands of
connections must not turn into thousands of lines (the disk, the log shipper and the
person reading it). The key names the kind of line ("tcp-refused"), never the peer:
an attacker with many addresses would otherwise get a fresh allowance per address
and fill the table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

LINES_PER_INTERVAL = 5
INTERVAL_S = 60.0
MAX_KEYS = 256  # keys are kinds of lines, a few dozen at most; bounded all the same


@dataclass
class _Window:
    start: float
    level: int
    written: int = 0
    left_out: int = 0


class LogLimiter:
    """`log(level, key, message, *args)` writes to `logger` unless `key` had its
    `per_interval` lines in the last `interval_s`; what it leaves out is counted and
    reported once, in one line, when the interval ends (at once if a loop runs, else
    with the key's next line, or at `flush()`)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_interval: int = LINES_PER_INTERVAL,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.per_interval = per_interval
        self.interval_s = interval_s
        self._clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.left_out = 0  # in all, for tests and figures

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Writes the line if its key still may; True when it was written."""
        if not self.allow(key, level):
            return False
        self.logger.log(level, message, *args)
        return True

    def allow(self, key: str, level: int = logging.WARNING) -> bool:
        """Counts one line of `key`: True when it may be written."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window.start >= self.interval_s:
            if window is not None:
                self._report(key)
            window = self._windows[key] = _Window(now, level)
            self._windows.move_to_end(key)
            while len(self._windows) > MAX_KEYS:
                self._report(next(iter(self._windows)), drop=True)
        if window.written < self.per_interval:
            window.written += 1
            return True
        window.left_out += 1
        self.left_out += 1
        if window.left_out == 1:
            self._report_later(key, window.start + self.interval_s - now)
        return False

    def flush(self) -> None:
        """Reports every key's lines left out so far (at shutdown)."""
        for key in list(self._windows):
            self._report(key)

    def _report_later(self, key: str, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: reported with the key's next line or at flush()
        self._timers[key] = loop.call_later(max(0.0, delay), self._report, key)

    def _report(self, key: str, drop: bool = False) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        window = self._windows.pop(key, None) if drop else self._windows.get(key)
        if window is None or not window.left_out:
            return
        self.logger.log(
            window.level,
            "suppressed %d similar log lines (%s) in %g s",
            window.left_out,
            key,
            self.interval_s,
        )
        window.left_out = 0


class RepeatFilter(logging.Filter):
    """Limits records whose message starts with one of `prefixes` (other code's lines,
    e.g. asyncio's "socket.accept() out of system resource", logged on every retry)."""

    def __init__(
        self,
        logger: logging.Logger,
        prefixes: Iterable[str],
        *,
        per_interval: int = LINES_PER_INTERVAL,
        interval_s: float = INTERVAL_S,
    ) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)
        self.limiter = LogLimiter(logger, per_interval=per_interval, interval_s=interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        for prefix in self.prefixes:
            if message.startswith(prefix):
                return self.limiter.allow(prefix, record.levelno)
        return True


def limit_repeats(logger: logging.Logger, prefixes: Iterable[str]) -> RepeatFilter:
    """Puts one RepeatFilter for `prefixes` on `logger`, once however often it is called."""
    wanted = tuple(prefixes)
    for existing in logger.filters:
        if isinstance(existing, RepeatFilter) and existing.prefixes == wanted:
            return existing
    added = RepeatFilter(logger, wanted)
    logger.addFilter(added)
    return added
