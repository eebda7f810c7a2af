import base64
import uuid
from datetime import timedelta

from sqlalchemy import event, insert

from api.models import Broadcast, BroadcastStatus, CallAttempt, CallOutcome, PbxUser
from tests.conftest import error_codes

DETAIL = """query($id: ID!) {
  broadcast(id: $id) {
    id groupName mode status memberCount startedAt finishedAt
    group { id agentExtension }
    attempts {
      memberName memberExtension attemptNo ringingAt answeredAt endedAt outcome
      member { id name extension state }
    }
  }
}"""


class QueryCounter:
    def __init__(self, engine):
        self.engine = engine.sync_engine
        self.statements: list[str] = []

    def _count(self, conn, cursor, statement, *args):
        self.statements.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)


async def _broadcast_with_attempts(rt, world, n: int):
    now = rt.clock()
    t = world.a.tenant_id
    broadcast_id = uuid.uuid4()
    users = [
        {
            "id": uuid.uuid4(),
            "tenant_id": t,
            "pbx_id": f"m{i}",
            "name": f"M {i:04d}",
            "extension": f"3{i:03d}",
            "state": 2,
            "callrouting_only": False,
            "synced_at": now,
        }
        for i in range(n)
    ]
    async with rt.db.transaction() as s:
        await s.execute(insert(PbxUser), users)
        s.add(
            Broadcast(
                id=broadcast_id,
                tenant_id=t,
                broadcast_group_id=world.a.broadcast_group_id,
                agent_broadcast_id="big",
                group_name="Brandschutz",
                mode=2,
                status=BroadcastStatus.COMPLETED,
                started_at=now,
                member_count=n,
            )
        )
        await s.flush()
        await s.execute(
            insert(CallAttempt),
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": t,
                    "broadcast_id": broadcast_id,
                    "member_user_id": u["id"],
                    "member_pbx_id": u["pbx_id"],
                    "member_name": u["name"],
                    "member_extension": u["extension"],
                    "attempt_no": 1,
                    "started_at": now,
                    "ringing_at": now,
                    "answered_at": now,
                    "ended_at": now,
                    "outcome": CallOutcome.CONFIRMED,
                }
                for u in users
            ],
        )
    return broadcast_id


async def test_a_broadcast_with_1000_attempts_takes_at_most_5_queries(gql, rt, world):
    broadcast_id = await _broadcast_with_attempts(rt, world, 1000)
    owner = gql.as_(world.tokens["owner"])
    with QueryCounter(rt.db.engine) as counter:
        data = await owner.ok(DETAIL, id=str(broadcast_id))
    attempts = data["broadcast"]["attempts"]
    assert len(attempts) == 1000
    assert all(a["member"]["name"] == a["memberName"] for a in attempts)
    assert data["broadcast"]["group"]["agentExtension"] == "299"
    assert len(counter.statements) <= 5, counter.statements
    print(f"\nbroadcast(id) with 1000 attempts: {len(counter.statements)} SQL queries")


async def test_the_query_count_does_not_grow_with_the_attempts(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    with QueryCounter(rt.db.engine) as small:
        await owner.ok(DETAIL, id=str(world.a.broadcast_id))
    big = await _broadcast_with_attempts(rt, world, 200)
    with QueryCounter(rt.db.engine) as large:
        await owner.ok(DETAIL, id=str(big))
    assert len(small.statements) == len(large.statements)


async def _many_broadcasts(rt, world, n: int):
    base = rt.clock() - timedelta(days=1)
    async with rt.db.transaction() as s:
        for i in range(n):
            s.add(
                Broadcast(
                    tenant_id=world.a.tenant_id,
                    broadcast_group_id=world.a.broadcast_group_id,
                    agent_broadcast_id=f"b{i}",
                    group_name="Brandschutz",
                    mode=1 if i % 2 else 2,
                    status=BroadcastStatus.COMPLETED,
                    started_at=base + timedelta(minutes=i),
                    member_count=3,
                )
            )


LIST = """query($first: Int!, $after: String, $filter: BroadcastFilter) {
  broadcasts(first: $first, after: $after, filter: $filter) {
    nodes { id mode startedAt }
    pageInfo { endCursor hasNextPage }
  }
}"""


async def test_broadcasts_page_newest_first_without_gaps_or_repeats(gql, rt, world):
    await _many_broadcasts(rt, world, 25)
    owner = gql.as_(world.tokens["owner"])
    seen, after = [], None
    while True:
        page = (await owner.ok(LIST, first=7, after=after))["broadcasts"]
        seen += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == 26  # 25 plus the world's own
    assert len({b["id"] for b in seen}) == 26
    starts = [b["startedAt"] for b in seen]
    assert starts == sorted(starts, reverse=True)


async def test_broadcasts_filter_by_mode_group_and_time(gql, rt, world):
    await _many_broadcasts(rt, world, 10)
    owner = gql.as_(world.tokens["owner"])
    tests = (await owner.ok(LIST, first=50, filter={"mode": "TEST"}))["broadcasts"]["nodes"]
    assert len(tests) == 5 and all(b["mode"] == "TEST" for b in tests)
    other = await owner.ok(LIST, first=50, filter={"groupId": str(world.a.plain_group_id)})
    assert other["broadcasts"]["nodes"] == []
    start = (rt.clock() - timedelta(days=1) + timedelta(minutes=3)).isoformat()
    end = (rt.clock() - timedelta(days=1) + timedelta(minutes=6)).isoformat()
    window = await owner.ok(LIST, first=50, filter={"startedFrom": start, "startedTo": end})
    assert len(window["broadcasts"]["nodes"]) == 3


async def test_a_forged_cursor_is_bad_input(gql, world):
    body = await gql.as_(world.tokens["owner"])(LIST, first=5, after="bm9wZQ==")
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_a_cursor_with_a_time_without_zone_is_bad_input(gql, world):
    # Review of issue 17, L1: a naive time reached Postgres and came back as a 500.
    naive = base64.urlsafe_b64encode(f"2026-01-01T00:00:00|{uuid.uuid4()}".encode()).decode()
    body = await gql.as_(world.tokens["owner"])(LIST, first=5, after=naive)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "after"


async def test_page_size_is_bounded(gql, world):
    body = await gql.as_(world.tokens["owner"])(LIST, first=1000)
    assert error_codes(body) == ["BAD_USER_INPUT"]
