"""Wrong-PIN notices the server refuses (edge_agent/ivr/notices.py): tried again later and
later, dropped (logged) once two days old; a notice the server takes goes at once."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.errors import ServerRefused
from edge_agent.ivr.notices import NoticeOutbox, wrong_pins


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


class Refusing:
    def __init__(self) -> None:
        self.tries = 0
        self.refuse = True
        self.got: list[dict[str, Any]] = []

    async def report_notice(self, notice: dict[str, Any]) -> bool:
        self.tries += 1
        if self.refuse:
            raise ServerRefused("Cannot query field reportNotice")
        self.got.append(notice)
        return True


def outbox_with_a_notice(tmp_path: Path, clock: Clock) -> NoticeOutbox:
    outbox = NoticeOutbox(tmp_path, clock=clock.time)
    at = datetime.fromtimestamp(clock.now, UTC)
    outbox.add(wrong_pins("7701", "+4930111", 10, at))
    [(path, _)] = outbox.pending()
    os.utime(path, (clock.now, clock.now))
    return outbox


async def test_a_refused_notice_is_tried_less_and_less_often(tmp_path: Path) -> None:
    clock = Clock()
    outbox = outbox_with_a_notice(tmp_path, clock)
    sink = Refusing()
    for _ in range(720):  # an hour of the sender's 5 s rounds
        assert await outbox.send(sink) == 0
        clock.now += 5
    # Every round was a try before; now 5 s doubling: 5, 10, 20, ... 1280 s apart.
    assert sink.tries <= 10
    assert len(outbox.pending()) == 1  # kept: a server may take it later
    sink.refuse = False
    clock.now += 3600  # the longest pause between tries
    assert await outbox.send(sink) == 1
    assert outbox.pending() == [] and len(sink.got) == 1


async def test_a_refused_notice_two_days_old_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    outbox = outbox_with_a_notice(tmp_path, clock)
    sink = Refusing()
    clock.now += 2 * 24 * 3600 - 60
    assert await outbox.send(sink) == 0
    assert len(outbox.pending()) == 1  # not two days old yet
    clock.now += 3600
    assert await outbox.send(sink) == 0
    assert outbox.pending() == []
    assert "dropped" in caplog.text
