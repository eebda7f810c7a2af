"""The delivery log on disk: whole lines, one file per day, old days pruned."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from workers.delivery_log import DeliveryLog


def test_what_one_process_records_another_finds(tmp_path: Path):
    first, second = DeliveryLog(tmp_path), DeliveryLog(tmp_path)
    try:
        first.record("<a@x.test>")
        second.record("<b@x.test>")
        assert DeliveryLog(tmp_path).contains("<a@x.test>")
        assert DeliveryLog(tmp_path).contains("<b@x.test>")
        assert not DeliveryLog(tmp_path).contains("<c@x.test>")
        assert len(first.files()) == 1
    finally:
        first.close()
        second.close()


def test_a_line_torn_by_a_crash_matches_nothing(tmp_path: Path):
    log = DeliveryLog(tmp_path)
    log.record("<a@x.test>")
    log.close()
    [path] = log.files()
    with path.open("ab") as f:
        f.write(b"<b@x.te")  # the process died in the middle of the write
    assert not log.contains("<b@x.te")
    assert not log.contains("<b@x.test>")
    assert log.contains("<a@x.test>")


def test_it_starts_a_file_per_day_and_prunes_old_days(tmp_path: Path):
    today = [date(2026, 11, 1)]
    log = DeliveryLog(tmp_path, today=lambda: today[0])
    try:
        log.record("<old@x.test>")
        today[0] = date(2026, 11, 8)
        log.record("<week@x.test>")
        today[0] = date(2026, 11, 9)
        log.record("<new@x.test>")
        assert len(log.files()) == 3

        assert log.prune() == 1

        assert [p.name for p in log.files()] == [
            "mail-delivery-2026-11-09.log",
            "mail-delivery-2026-11-08.log",
        ]
        assert not log.contains("<old@x.test>")
        assert log.contains("<week@x.test>")
        assert log.contains("<new@x.test>")
    finally:
        log.close()


def test_an_empty_or_missing_folder_holds_nothing(tmp_path: Path):
    log = DeliveryLog(tmp_path / "not-yet")
    assert log.files() == []
    assert not log.contains("<a@x.test>")
    assert log.prune() == 0
