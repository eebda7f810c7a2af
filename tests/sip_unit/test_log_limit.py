"""The log limiter: N lines per key per interval, then one line with the count left out."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edge_agent.sip.log_limit import LogLimiter, limit_repeats

ACCEPT_FAILED = "socket.accept() out of system resource"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_a_key_gets_its_lines_then_one_line_says_how_many_were_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="limited")
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("limited"), per_interval=3, interval_s=60, clock=clock)
    written = [limiter.log(logging.WARNING, "refused", "refused %d", n) for n in range(1000)]
    assert written == [True] * 3 + [False] * 997
    other = limiter.log(logging.WARNING, "malformed", "malformed")  # its own allowance
    assert other
    assert lines(caplog, "limited") == ["refused 0", "refused 1", "refused 2", "malformed"]
    clock.now += 60
    assert limiter.log(logging.WARNING, "refused", "refused %d", 1000)
    assert lines(caplog, "limited")[4:] == [
        "suppressed 997 similar log lines (refused) in 60 s",
        "refused 1000",
    ]
    assert caplog.records[4].levelno == logging.WARNING
    assert limiter.left_out == 997


def test_flush_reports_what_was_left_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="limited")
    limiter = LogLimiter(logging.getLogger("limited"), per_interval=1, clock=Clock())
    for _ in range(5):
        limiter.log(logging.INFO, "k", "line")
    limiter.flush()
    limiter.flush()  # once
    assert lines(caplog, "limited") == ["line", "suppressed 4 similar log lines (k) in 60 s"]


async def test_with_a_loop_the_count_comes_when_the_interval_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="limited")
    limiter = LogLimiter(logging.getLogger("limited"), per_interval=2, interval_s=0.2)
    for _ in range(50):
        limiter.log(logging.WARNING, "k", "line")
    assert len(lines(caplog, "limited")) == 2
    await asyncio.sleep(0.4)  # nothing else is logged: the timer reports
    assert lines(caplog, "limited")[2:] == ["suppressed 48 similar log lines (k) in 0.2 s"]


def test_the_table_of_keys_stays_bounded() -> None:
    limiter = LogLimiter(logging.getLogger("limited"), per_interval=1, clock=Clock())
    for n in range(10_000):
        limiter.log(logging.DEBUG, f"k{n}", "line")
    assert len(limiter._windows) <= 256


def test_asyncios_accept_failure_lines_are_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="limited-asyncio")
    logger = logging.getLogger("limited-asyncio")
    added = limit_repeats(logger, [ACCEPT_FAILED])
    try:
        assert limit_repeats(logger, [ACCEPT_FAILED]) is added  # one filter, not two
        assert logger.filters.count(added) == 1
        for _ in range(500):
            logger.error(ACCEPT_FAILED + "\nsocket: <socket>", exc_info=False)
        logger.error("something else")
        added.limiter.flush()
    finally:
        logger.removeFilter(added)
    seen = lines(caplog, "limited-asyncio")
    assert len(seen) == 5 + 1 + 1
    assert seen[-1] == f"suppressed 495 similar log lines ({ACCEPT_FAILED}) in 60 s"
