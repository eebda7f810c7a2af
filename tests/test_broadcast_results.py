"""The list's result and outcome, its outcome filter and the bounds of its arguments
(issue 17, point 4)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from api.models import Broadcast, BroadcastStatus, CallAttempt, CallOutcome
from tests.conftest import error_codes

LIST = """query($first: Int!, $after: String, $filter: BroadcastFilter) {
  broadcasts(first: $first, after: $after, filter: $filter) {
    nodes { id status memberCount confirmedCount outcome }
    pageInfo { endCursor hasNextPage }
  }
}"""

C, N = CallOutcome.CONFIRMED, CallOutcome.NO_ANSWER


async def _broadcast(rt, world, minute: int, members: int, outcomes: list[list[CallOutcome]], **kw):
    """A broadcast of tenant A in yesterday's window; `outcomes` per member, by attempt."""
    start = rt.clock() - timedelta(days=1) + timedelta(minutes=minute)
    b = Broadcast(
        id=uuid.uuid4(),
        tenant_id=world.a.tenant_id,
        broadcast_group_id=world.a.broadcast_group_id,
        agent_broadcast_id=f"r{minute}",
        group_name="Brandschutz",
        mode=2,
        status=kw.pop("status", BroadcastStatus.COMPLETED),
        started_at=start,
        member_count=members,
        **kw,
    )
    async with rt.db.transaction() as s:
        s.add(b)
        await s.flush()
        for m, attempts in enumerate(outcomes):
            for no, outcome in enumerate(attempts, 1):
                s.add(
                    CallAttempt(
                        tenant_id=world.a.tenant_id,
                        broadcast_id=b.id,
                        member_pbx_id=f"p{m}",
                        member_name=f"Mitglied {m:02d}",
                        attempt_no=no,
                        started_at=start,
                        ended_at=start,
                        outcome=outcome,
                    )
                )
    return str(b.id)


async def _made(rt, world) -> dict[str, str]:
    now = rt.clock()
    return {
        # 15 of 20 confirmed, one of them only on the second attempt: not green.
        "UNCONFIRMED": await _broadcast(rt, world, 1, 20, [[C]] * 14 + [[N, C]] + [[N, N]] * 5),
        "ALL_CONFIRMED": await _broadcast(rt, world, 2, 3, [[C], [N, C], [C]]),
        "QUORUM_REACHED": await _broadcast(
            rt, world, 3, 4, [[C], [C], [N]], quorum=2, quorum_reached_at=now
        ),
        "RUNNING": await _broadcast(rt, world, 4, 3, [[C]], status=BroadcastStatus.RUNNING),
        "FAILED": await _broadcast(rt, world, 5, 0, [], failure_code="AGENT_UNREACHABLE"),
        "CANCELLED": await _broadcast(rt, world, 6, 3, [[N]], status=BroadcastStatus.CANCELLED),
    }


def _window(rt) -> dict[str, Any]:
    day = rt.clock() - timedelta(days=1)
    return {"startedFrom": day.isoformat(), "startedTo": (day + timedelta(hours=1)).isoformat()}


async def test_each_broadcast_says_how_many_confirmed_and_how_it_went(gql, rt, world):
    made = await _made(rt, world)
    owner = gql.as_(world.tokens["owner"])
    nodes = (await owner.ok(LIST, first=50, filter=_window(rt)))["broadcasts"]["nodes"]
    by_id = {n["id"]: n for n in nodes}
    assert {by_id[i]["outcome"] for i in made.values()} == set(made)
    for outcome, ident in made.items():
        assert by_id[ident]["outcome"] == outcome
    fifteen = by_id[made["UNCONFIRMED"]]
    assert (fifteen["confirmedCount"], fifteen["memberCount"]) == (15, 20)
    assert fifteen["status"] == "COMPLETED"
    assert by_id[made["ALL_CONFIRMED"]]["confirmedCount"] == 3


async def test_the_outcome_filter_agrees_with_each_broadcasts_outcome(gql, rt, world):
    made = await _made(rt, world)
    owner = gql.as_(world.tokens["owner"])
    for outcome, ident in made.items():
        flt = {**_window(rt), "outcome": outcome}
        nodes = (await owner.ok(LIST, first=50, filter=flt))["broadcasts"]["nodes"]
        assert [n["id"] for n in nodes] == [ident], outcome


async def test_filters_combine_with_paging_newest_first(gql, rt, world):
    made = await _made(rt, world)
    owner = gql.as_(world.tokens["owner"])
    seen, after = [], None
    while True:
        page = (await owner.ok(LIST, first=2, after=after, filter=_window(rt)))["broadcasts"]
        seen += [n["id"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == list(reversed(made.values()))


async def test_the_outsider_sees_none_of_it(gql, rt, world):
    await _made(rt, world)
    outsider = gql.as_(world.tokens["outsider"])
    nodes = (await outsider.ok(LIST, first=50, filter=_window(rt)))["broadcasts"]["nodes"]
    assert nodes == []


async def test_hostile_arguments_are_bad_input_without_a_trace(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    day = rt.clock()
    later = (day + timedelta(hours=1)).isoformat()
    cases: list[dict[str, Any]] = [
        {"first": 0},
        {"first": 101},
        {"first": -5},
        {"first": 5, "filter": {"startedFrom": later, "startedTo": day.isoformat()}},
        {"first": 5, "filter": {"startedFrom": later, "startedTo": later}},
        {"first": 5, "after": "x" * 300},
        {"first": 5, "filter": {"startedFrom": "yesterday"}},
    ]
    # Values of the wrong type fail GraphQL's own validation, with its code.
    wrong_type: list[dict[str, Any]] = [
        {"first": 5, "filter": {"outcome": "EVERYTHING"}},
        {"first": "many"},
    ]
    for variables in cases + wrong_type:
        body = await owner(LIST, **variables)
        expected = ["BAD_USER_INPUT"] if variables in cases else ["GRAPHQL_VALIDATION_FAILED"]
        assert error_codes(body) == expected, (variables, body)
        assert body.get("data") is None, body
        assert "Traceback" not in str(body) and 'File "' not in str(body), body
