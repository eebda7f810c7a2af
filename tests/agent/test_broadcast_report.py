"""What the agent sends as a broadcast report: the wire shape and the size of a batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from edge_agent.broadcast.model import Broadcast, Event, Member
from edge_agent.broadcast.reporter import MAX_REPORT_BYTES, fitting, report_json

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
MEMBERS = {"u1": Member(0, "u1", "Jürgen Müller", "201")}
BROADCAST = Broadcast("b1", "job", "j1", "g1", 2, NOW, NOW, status="completed", finished_at=NOW)


def test_a_report_names_members_and_sends_outcomes_in_the_servers_spelling() -> None:
    events = [
        Event(1, "u1", 1, "started", NOW),
        Event(2, "u1", 1, "ended", NOW, "skipped_busy", "busy (busy)"),
    ]
    report = report_json(BROADCAST, MEMBERS, events, final=True)
    assert (report["mode"], report["status"], report["finishedAt"]) == (
        "ALARM",
        "COMPLETED",
        NOW.isoformat(),
    )
    assert report["events"][1] == {
        "seq": 2,
        "memberPbxId": "u1",
        "memberName": "Jürgen Müller",
        "memberExtension": "201",
        "attemptNo": 1,
        "kind": "ended",
        "at": NOW.isoformat(),
        "outcome": "SKIPPED_BUSY",
        "detail": "busy (busy)",
    }


def test_a_report_that_is_not_final_says_running_and_has_no_end() -> None:
    report = report_json(BROADCAST, MEMBERS, [], final=False)
    assert (report["status"], report["finishedAt"]) == ("RUNNING", None)


def test_a_batch_of_long_events_is_cut_below_the_size_limit() -> None:
    events = [Event(i, "u1", 1, "ended", NOW, "failed", "ä" * 2000) for i in range(1, 501)]
    batch = fitting(events, MEMBERS)
    assert 0 < len(batch) < 500 and batch == events[: len(batch)]
    body = json.dumps(report_json(BROADCAST, MEMBERS, batch, final=False))
    assert len(body) <= MAX_REPORT_BYTES + 2000
    assert fitting(events[:1], MEMBERS) == events[:1]  # one event always goes


def test_text_from_the_pbx_goes_cleaned_so_the_server_takes_the_report() -> None:
    # A caller name from the call routing and a member name from an old cache, as the PBX
    # had them: the server (and PostgreSQL) would refuse the report, and keep refusing it.
    poisoned = Broadcast(
        "b2",
        "job",
        "j2",
        "g1",
        2,
        NOW,
        NOW,
        caller_number="0711\x00",
        caller_name="Pforte\x85\ud800",
        note="Zeile 1\nZeile 2\x1b",
    )
    members = {"u1": Member(0, "u1", "Max\x00Muster", "2\x0001")}
    events = [Event(1, "u1", 1, "ended", NOW, "failed", "603 Decline\x07")]
    report = report_json(poisoned, members, events, final=True)
    json.dumps(report, ensure_ascii=False).encode("utf-8")
    assert (report["triggerCallerNumber"], report["triggerCallerName"]) == (
        "0711\ufffd",
        "Pforte \ufffd",
    )
    assert report["note"] == "Zeile 1 Zeile 2\ufffd"
    event = report["events"][0]
    assert (event["memberName"], event["memberExtension"]) == ("Max\ufffdMuster", None)
    assert event["detail"] == "603 Decline\ufffd"
