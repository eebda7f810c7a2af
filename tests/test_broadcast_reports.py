"""The agent's broadcast reports become the history, each event exactly once."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from api.models import Broadcast, CallAttempt, CallOutcome
from api.services import report_kinds
from tests.conftest import error_codes
from tests.test_agent_service import Stream

REPORT = "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }"
HISTORY = """query($first: Int!) { broadcasts(first: $first) { nodes { id groupName mode status
  memberCount triggerCallerNumber finishedAt attempts { memberName attemptNo ringingAt
  answeredAt confirmedAt endedAt outcome detail member { name } } } } }"""


def _at(rt, seconds: float) -> str:
    return (rt.clock() + timedelta(seconds=seconds)).isoformat()


def _events(rt, member: int, start_seq: int, outcome: str = "CONFIRMED") -> list[dict]:
    steps = ["started", "ringing", "answered", "confirmed", "ended"]
    return [
        {
            "seq": start_seq + i,
            "memberPbxId": f"u{member}",
            "memberName": f"Member {member}",
            "memberExtension": f"20{member}",
            "attemptNo": 1,
            "kind": kind,
            "at": _at(rt, i),
            **({"outcome": outcome} if kind == "ended" else {}),
        }
        for i, kind in enumerate(steps)
    ]


def _report(rt, events: list[dict], status: str = "RUNNING", **extra) -> dict:
    return {
        "input": {
            "broadcastId": "b-1",
            "groupPbxId": "g1",
            "mode": "ALARM",
            "startedAt": _at(rt, 0),
            "memberCount": 3,
            "status": status,
            "triggerCallerNumber": "100",
            "events": events,
            **extra,
        }
    }


async def _rows(rt) -> tuple[int, int]:
    async with rt.db.reading() as s:
        b = await s.scalar(select(func.count()).select_from(Broadcast))
        a = await s.scalar(select(func.count()).select_from(CallAttempt))
    return b, a


async def test_reports_build_the_history_once_whatever_is_sent_twice(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    first = _events(rt, 0, 1)
    ack = await agent.ok(REPORT, **_report(rt, first))
    assert ack["reportBroadcast"]["lastSeq"] == 5
    before = await _rows(rt)
    # After a reconnect the agent resends what it is not sure of, plus new events.
    again = await agent.ok(REPORT, **_report(rt, first + _events(rt, 1, 6, "BUSY")))
    assert again["reportBroadcast"]["lastSeq"] == 10
    assert (await _rows(rt))[1] == before[1] + 1
    final = await agent.ok(REPORT, **_report(rt, [], status="COMPLETED", finishedAt=_at(rt, 30)))
    assert final["reportBroadcast"]["lastSeq"] == 10
    history = await gql.as_(world.tokens["owner"]).ok(HISTORY, first=5)
    newest = history["broadcasts"]["nodes"][0]
    assert newest["groupName"] == "Brandschutz"
    assert newest["status"] == "COMPLETED" and newest["finishedAt"]
    outcomes = {a["memberName"]: a["outcome"] for a in newest["attempts"]}
    assert outcomes == {"Member 0": "CONFIRMED", "Member 1": "BUSY"}
    assert all(a["member"]["name"] == a["memberName"] for a in newest["attempts"])


async def test_a_finished_broadcast_stays_finished(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(REPORT, **_report(rt, [], status="COMPLETED", finishedAt=_at(rt, 5)))
    await agent.ok(REPORT, **_report(rt, [], status="RUNNING"))
    history = await gql.as_(world.tokens["owner"]).ok(HISTORY, first=1)
    assert history["broadcasts"]["nodes"][0]["status"] == "COMPLETED"


async def test_a_browser_watches_the_broadcast_move_on(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    query = "subscription { broadcastUpdated { groupName attempts { outcome } } }"
    async with Stream(rt, world.tokens["viewer"], query) as updates:
        await updates.listening()
        await agent.ok(REPORT, **_report(rt, _events(rt, 0, 1)))
        seen = await updates.next()
    assert seen == {"groupName": "Brandschutz", "attempts": [{"outcome": "CONFIRMED"}]}


@pytest.mark.parametrize(
    "bad",
    [
        {"seq": 0},
        {"kind": ""},  # a kind that is no name is refused; an unknown name is not
        {"kind": "Held"},
        {"kind": "held over"},
        {"kind": "x" * 33},
        {"outcome": "BUSY"},  # on a "started" event
        {"attemptNo": 0},
        {"at": "2030-01-01T00:00:00"},  # no zone
        {"lateFrom": "2030-01-01T00:00:00+00:00"},  # an outage without a reason
        {"lateReason": "AGENT_DOWN", "lateUntil": "2030-01-01T00:00:00"},  # no zone
    ],
)
async def test_bad_reports_are_refused_and_write_nothing(gql, rt, world, bad):
    event = {**_events(rt, 0, 1)[0], **bad}
    before = await _rows(rt)
    body = await gql.as_(world.tokens["agent_a"])(REPORT, **_report(rt, [event]))
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert await _rows(rt) == before


YEAR_1 = "0001-01-01T00:00:00+00:00"
YEAR_9999 = "9999-12-31T23:59:59+00:00"


@pytest.mark.parametrize(
    ("where", "key", "at", "field"),
    [
        ("report", "startedAt", YEAR_1, "startedAt"),
        ("report", "startedAt", YEAR_9999, "startedAt"),
        ("report", "finishedAt", YEAR_9999, "finishedAt"),
        ("report", "quorumReachedAt", YEAR_9999, "quorumReachedAt"),
        ("report", "finishedAt", "1999-12-31T23:59:59+00:00", "finishedAt"),
        ("event", "at", YEAR_9999, "events.0.at"),
        ("event", "at", YEAR_1, "events.0.at"),
        ("late", "lateUntil", YEAR_9999, "events.0.lateUntil"),
    ],
)
async def test_a_reported_time_outside_2000_to_a_day_ahead_is_refused_naming_it(
    gql, rt, world, where, key, at, field
):
    """Year 1 and 9999 used to be stored: a history sorted by them (issue 14, point 4)."""
    event = _events(rt, 0, 1)[0]
    extra = {}
    if where == "report":
        extra[key] = at
    elif where == "late":
        event = {**event, "lateReason": "AGENT_DOWN", key: at}
    else:
        event = {**event, key: at}
    before = await _rows(rt)
    body = await gql.as_(world.tokens["agent_a"])(REPORT, **_report(rt, [event], **extra))
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    extensions = body["errors"][0]["extensions"]
    assert (extensions["field"], extensions["reason"]) == (field, "outOfRange")
    assert await _rows(rt) == before


async def test_a_time_a_day_ahead_of_the_servers_clock_still_counts(gql, rt, world):
    """A badly set agent clock: its report is kept, as its health reports are."""
    event = {**_events(rt, 0, 1)[0], "at": _at(rt, 23 * 3600)}
    body = await gql.as_(world.tokens["agent_a"])(REPORT, **_report(rt, [event]))
    assert not body.get("errors"), body


async def test_events_out_of_order_are_refused(gql, rt, world):
    events = _events(rt, 0, 1)
    body = await gql.as_(world.tokens["agent_a"])(REPORT, **_report(rt, events[::-1]))
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_one_tenants_agent_cannot_write_into_anothers_history(gql, rt, world):
    await gql.as_(world.tokens["agent_b"]).ok(REPORT, **_report(rt, _events(rt, 0, 1)))
    names = [
        b["groupName"]
        for b in (await gql.as_(world.tokens["owner"]).ok(HISTORY, first=10))["broadcasts"]["nodes"]
    ]
    assert names.count("Brandschutz") == 1  # only the world's own broadcast


async def test_one_large_report_stores_every_attempt_of_every_member(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    events: list[dict] = []
    for member in range(300):
        for attempt, outcome in ((1, "NO_ANSWER"), (2, "CONFIRMED")):
            for kind in ("started", "ended"):
                events.append(
                    {
                        "seq": len(events) + 1,
                        "memberPbxId": f"big{member}",
                        "memberName": f"Member {member}",
                        "attemptNo": attempt,
                        "kind": kind,
                        "at": _at(rt, attempt),
                        **({"outcome": outcome} if kind == "ended" else {}),
                    }
                )
    ack = await agent.ok(REPORT, **_report(rt, events[:1000]))
    assert ack["reportBroadcast"]["lastSeq"] == 1000
    ack = await agent.ok(REPORT, **_report(rt, events[900:]))  # overlapping resend
    assert ack["reportBroadcast"]["lastSeq"] == 1200
    async with rt.db.reading() as s:
        rows = (
            await s.scalars(select(CallAttempt).where(CallAttempt.member_pbx_id.like("big%")))
        ).all()
    assert len(rows) == 600
    assert {(r.attempt_no, r.outcome) for r in rows} == {(1, "no_answer"), (2, "confirmed")}
    assert all(r.started_at is not None and r.ended_at is not None for r in rows)


LATE_HISTORY = """query { broadcasts(first: 1) { nodes { attempts { memberName attemptNo
  startedAt outcome detail lateReason lateFrom lateUntil } } } }"""


async def test_late_attempts_and_members_not_called_show_why_in_the_history(gql, rt, world):
    """Issue 14, point 11: the agent's journal events as its reporter sends them."""
    from datetime import UTC, datetime

    from edge_agent.broadcast.model import Event, Late, Member
    from edge_agent.broadcast.reporter import event_json

    down_from = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    back = datetime(2026, 12, 7, 9, 40, tzinfo=UTC)
    outage = Late("agent_down", down_from, back)
    members = {p: Member(i, p, f"Member {i}", f"20{i}") for i, p in enumerate(("u0", "u1", "u2"))}
    events = [
        Event(1, "u0", 1, "started", down_from, detail="200"),
        Event(2, "u0", 1, "ended", down_from, "busy"),
        Event(3, "u1", 1, "started", back, detail="201", late=outage),
        Event(4, "u1", 1, "ended", back, "confirmed"),
        Event(5, "u2", 1, "ended", back, "not_called", "not called", late=outage),
    ]
    wire = [event_json(e, members) for e in events]
    assert "lateReason" not in wire[0]  # an event on time is sent as before
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(REPORT, **_report(rt, wire, status="COMPLETED", finishedAt=back.isoformat()))
    history = await gql.as_(world.tokens["owner"]).ok(LATE_HISTORY)
    rows = {a["memberName"]: a for a in history["broadcasts"]["nodes"][0]["attempts"]}
    assert len(rows) == 3
    assert rows["Member 0"]["lateReason"] is None and rows["Member 0"]["outcome"] == "BUSY"
    for name, outcome in (("Member 1", "CONFIRMED"), ("Member 2", "NOT_CALLED")):
        row = rows[name]
        assert (row["outcome"], row["lateReason"]) == (outcome, "AGENT_DOWN")
        got = (datetime.fromisoformat(row["lateFrom"]), datetime.fromisoformat(row["lateUntil"]))
        assert got == (down_from, back)
    assert rows["Member 2"]["startedAt"] is None


async def test_an_agent_that_lost_its_memory_neither_undoes_a_confirmation_nor_the_journal_note(
    gql, rt, world
):
    # Issue 14, point 10 (review point 2): the agent crashed while its journal was behind.
    # Its memory had reported the member's confirmation and the journal's note; after the
    # restart it ends the same attempt "interrupted" (from the file) with a plain note.
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(REPORT, **_report(rt, _events(rt, 0, 1), note="journalNotWritable"))
    interrupted = {**_events(rt, 0, 1, "FAILED")[4], "seq": 100_006, "detail": "interrupted"}
    again = await agent.ok(REPORT, **_report(rt, [interrupted], note="a fallback message"))
    assert again["reportBroadcast"]["lastSeq"] == 100_006
    async with rt.db.reading() as s:
        broadcast = await s.scalar(select(Broadcast).where(Broadcast.agent_broadcast_id == "b-1"))
        assert broadcast is not None
        attempt = await s.scalar(
            select(CallAttempt).where(CallAttempt.broadcast_id == broadcast.id)
        )
    assert attempt is not None
    assert (attempt.outcome, attempt.detail) == (CallOutcome.CONFIRMED, None)
    assert broadcast.note == "a fallback message; journalNotWritable"


async def test_reports_of_up_to_the_most_events_pass_the_bound_on_values(gql, rt, world):
    """json_guard refuses bodies of more than 25,000 values unless a verified agent
    sent them large (gzip, agent_bodies.py): a plain report of 1,000 events and the
    agent's own gzip-encoded report of 2,000 (the most a report carries) both count."""
    from api.services.broadcast_reports import MAX_EVENTS
    from tests.test_large_directory import _server

    events = [e for member in range(MAX_EVENTS // 5) for e in _events(rt, member, 5 * member + 1)]
    assert len(events) == MAX_EVENTS
    agent = gql.as_(world.tokens["agent_a"])  # plain JSON, under 256 KiB: not verified
    ack = await agent.ok(REPORT, **_report(rt, events[:1000]))
    assert ack["reportBroadcast"]["lastSeq"] == 1000
    server = _server(rt, world.tokens["agent_a"])  # gzip-encoded past 64 KiB
    assert await server.report_broadcast(_report(rt, events)["input"]) == MAX_EVENTS


async def test_a_member_holding_the_call_leaves_held_and_resumed_steps(gql, rt, world):
    """Issue 15, point 7: the agent reports "held" and "resumed"; the latest of each is
    kept, so a hold after the last return shows that the call ended on hold."""
    agent = gql.as_(world.tokens["agent_a"])
    kinds = ["started", "ringing", "answered", "held", "resumed", "held", "ended"]
    events = [
        {
            "seq": i + 1,
            "memberPbxId": "u0",
            "memberName": "Member 0",
            "attemptNo": 1,
            "kind": kind,
            "at": _at(rt, i),
            **({"outcome": "ANSWERED", "detail": "endedOnHold"} if kind == "ended" else {}),
        }
        for i, kind in enumerate(kinds)
    ]
    await agent.ok(REPORT, **_report(rt, events))
    query = """query { broadcasts(first: 1) { nodes { attempts { answeredAt heldAt resumedAt
      endedAt outcome detail } } } }"""
    history = await gql.as_(world.tokens["viewer"]).ok(query)
    [attempt] = history["broadcasts"]["nodes"][0]["attempts"]
    at = {name: attempt[name] for name in ("answeredAt", "heldAt", "resumedAt", "endedAt")}
    assert at["answeredAt"] < at["resumedAt"] < at["heldAt"] < at["endedAt"]
    assert at["heldAt"] == _at(rt, 5) and at["resumedAt"] == _at(rt, 4)
    assert (attempt["outcome"], attempt["detail"]) == ("ANSWERED", "endedOnHold")


async def test_a_kind_this_service_does_not_know_is_ignored_and_the_rest_stored(
    gql, rt, world, caplog
):
    """A newer agent's kind (docs/decisions/report-compatibility.md): before, the whole
    report was refused ("unknown event kind") and the broadcast's history lost."""
    agent = gql.as_(world.tokens["agent_a"])
    events = _events(rt, 0, 1)  # started, ringing, answered, confirmed, ended
    future = {**events[2], "seq": 4, "kind": "transferred", "at": _at(rt, 2.5)}
    renumbered = [events[0], events[1], events[2], future] + [
        {**e, "seq": e["seq"] + 1} for e in events[3:]
    ]
    late = {**future, "seq": 7, "kind": "transferred", "outcome": "BUSY"}  # with an outcome
    before = report_kinds.ignored_counts().get("transferred", 0)
    with caplog.at_level(logging.WARNING, logger="api.services.report_kinds"):
        ack = await agent.ok(REPORT, **_report(rt, [*renumbered, late]))
        # The last number counts the ignored event: the agent does not send it again.
        assert ack["reportBroadcast"]["lastSeq"] == 7
        again = await agent.ok(REPORT, **_report(rt, [late], status="COMPLETED"))
        assert again["reportBroadcast"]["lastSeq"] == 7
    assert report_kinds.ignored_counts()["transferred"] == before + 2  # not the repeat
    logged = [r for r in caplog.records if "'transferred'" in r.getMessage()]
    assert len(logged) == (1 if before == 0 else 0)  # once, not per report
    history = await gql.as_(world.tokens["owner"]).ok(HISTORY, first=1)
    [attempt] = history["broadcasts"]["nodes"][0]["attempts"]
    assert attempt["outcome"] == "CONFIRMED"
    assert attempt["answeredAt"] == _at(rt, 2) and attempt["confirmedAt"] == _at(rt, 3)
    assert history["broadcasts"]["nodes"][0]["status"] == "COMPLETED"


async def test_an_unknown_kind_is_still_checked_like_every_event(gql, rt, world):
    """Only the kind is let pass: a bad time on an unknown kind refuses the report."""
    events = _events(rt, 0, 1)
    bad = {**events[0], "seq": 6, "kind": "transferred", "at": "2030-01-01T00:00:00"}
    before = await _rows(rt)
    body = await gql.as_(world.tokens["agent_a"])(REPORT, **_report(rt, [*events, bad]))
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert await _rows(rt) == before
