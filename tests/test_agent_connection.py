"""Whether a tenant's agent is connected: one rule, in the API and live to the website.

Silent for more than two poll intervals, an installation is offline since its
last heartbeat, and what it reported before is unknown, not green. The tenant's
users see their own agent only.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, update
from starlette.requests import HTTPConnection
from strawberry.types import ExecutionResult

from api.domain.connection import AgentState, connection
from api.models import Installation, PbxSettings
from api.runtime import Runtime
from schema.context import Context
from schema.schema import build_schema
from tests.conftest import Clock, GraphQL, error_codes
from tests.world import World

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLL = 60

AGENT_CONNECTION = """query($t: ID) { agentConnection(tenantId: $t) {
  state since staleAt pollIntervalSeconds installation { id hostname } } }"""
INSTALLATIONS = """query($t: ID) { installations(tenantId: $t) { id hostname connected
  offlineSince lastHeartbeatAt participantCount pbxReachable jobserviceReachable
  alarmServiceOk } }"""
HEALTH = (
    """mutation($input: HealthInput!) { reportHealth(input: $input) { pollIntervalSeconds } }"""
)
CHANGED = """subscription($t: ID) { agentConnectionChanged(tenantId: $t) {
  state since staleAt installation { hostname } } }"""


def same_time(value: str | None, at: datetime) -> bool:
    return value is not None and datetime.fromisoformat(value) == at


# --- the rule (no I/O) --------------------------------------------------------------


def test_it_is_connected_up_to_two_poll_intervals_after_the_heartbeat():
    seen = connection(T0, T0 - timedelta(days=1), None, T0 + timedelta(seconds=120), POLL)
    assert seen.state is AgentState.CONNECTED
    assert seen.since is None
    assert seen.stale_at == T0 + timedelta(seconds=120)
    assert seen.current(True) is True


def test_it_is_offline_since_the_heartbeat_once_two_intervals_passed():
    now = T0 + timedelta(seconds=121)
    seen = connection(T0, T0 - timedelta(days=1), None, now, POLL)
    assert seen.state is AgentState.OFFLINE
    assert seen.since == T0
    assert seen.stale_at is None
    # What it reported before is unknown now, not the last value.
    assert seen.current(True) is None
    assert seen.current(5) is None


def test_the_bound_follows_the_tenants_poll_interval():
    now = T0 + timedelta(seconds=11)
    assert connection(T0, T0, None, now, 5).state is AgentState.OFFLINE
    assert connection(T0, T0, None, now, 60).state is AgentState.CONNECTED


def test_one_that_never_reported_says_so_since_its_enrolment():
    seen = connection(None, T0, None, T0 + timedelta(seconds=1), POLL)
    assert seen.state is AgentState.NEVER_REPORTED
    assert seen.since == T0
    assert seen.current(True) is None


def test_a_revoked_one_is_offline_however_fresh_its_heartbeat():
    seen = connection(T0, T0, T0, T0 + timedelta(seconds=1), POLL)
    assert seen.state is AgentState.OFFLINE
    assert seen.since == T0


# --- through the API ----------------------------------------------------------------


async def _heartbeat(rt: Runtime, installation_id: uuid.UUID, at: datetime | None) -> None:
    async with rt.db.transaction() as s:
        await s.execute(
            update(Installation)
            .where(Installation.id == installation_id)
            .values(last_heartbeat_at=at)
        )


def _report(at: datetime, pbx_reachable: bool = True) -> dict[str, Any]:
    return {
        "input": {
            "agentVersion": "1.0.1",
            "pbxReachable": pbx_reachable,
            "jobserviceReachable": True,
            "alarmServiceOk": True,
            "participantCount": 4,
            "reportedAt": at.isoformat(),
        }
    }


async def test_a_fresh_installation_is_connected_with_its_values(gql: GraphQL, world: World):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(AGENT_CONNECTION)
    agent = data["agentConnection"]
    assert agent["state"] == "CONNECTED"
    assert agent["since"] is None
    assert agent["pollIntervalSeconds"] == 60
    assert agent["installation"]["hostname"] == "swyx.owner.example"
    [inst] = (await owner.ok(INSTALLATIONS))["installations"]
    assert inst["connected"] is True and inst["offlineSince"] is None
    assert inst["pbxReachable"] is True and inst["participantCount"] == 3


async def test_a_silent_installation_is_offline_and_its_values_unknown(
    gql: GraphQL, rt: Runtime, clock: Clock, world: World
):
    owner = gql.as_(world.tokens["owner"])
    last = clock.now
    await _heartbeat(rt, world.a.installation_id, last)
    clock.advance(seconds=2 * POLL)
    assert (await owner.ok(AGENT_CONNECTION))["agentConnection"]["state"] == "CONNECTED"
    clock.advance(seconds=1)
    agent = (await owner.ok(AGENT_CONNECTION))["agentConnection"]
    assert agent["state"] == "OFFLINE"
    assert same_time(agent["since"], last)
    [inst] = (await owner.ok(INSTALLATIONS))["installations"]
    assert inst["connected"] is False
    assert same_time(inst["offlineSince"], last)
    assert same_time(inst["lastHeartbeatAt"], last)
    # Not the last green values: unknown since the last heartbeat.
    for name in ("participantCount", "pbxReachable", "jobserviceReachable", "alarmServiceOk"):
        assert inst[name] is None, name
    # The platform admin's monitoring reads the same.
    platform = gql.as_(world.tokens["platform"])
    rows = (await platform.ok(INSTALLATIONS, t=str(world.a.tenant_id)))["installations"]
    assert rows[0]["connected"] is False and rows[0]["pbxReachable"] is None


async def test_a_report_after_silence_connects_it_again(gql: GraphQL, clock: Clock, world: World):
    owner = gql.as_(world.tokens["owner"])
    clock.advance(seconds=10 * POLL)
    assert (await owner.ok(AGENT_CONNECTION))["agentConnection"]["state"] == "OFFLINE"
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(HEALTH, **_report(clock.now, pbx_reachable=False))
    data = (await owner.ok(AGENT_CONNECTION))["agentConnection"]
    assert data["state"] == "CONNECTED"
    assert same_time(data["staleAt"], clock.now + timedelta(seconds=2 * POLL))
    [inst] = (await owner.ok(INSTALLATIONS))["installations"]
    assert inst["pbxReachable"] is False and inst["participantCount"] == 4


async def test_a_short_poll_interval_makes_it_offline_sooner(
    gql: GraphQL, rt: Runtime, clock: Clock, world: World
):
    async with rt.db.transaction() as s:
        await s.execute(
            update(PbxSettings)
            .where(PbxSettings.tenant_id == world.a.tenant_id)
            .values(poll_interval_seconds=5)
        )
    clock.advance(seconds=11)
    agent = (await gql.as_(world.tokens["owner"]).ok(AGENT_CONNECTION))["agentConnection"]
    assert agent["state"] == "OFFLINE" and agent["pollIntervalSeconds"] == 5


async def test_one_that_never_reported_says_since_when_it_is_enrolled(
    gql: GraphQL, rt: Runtime, world: World
):
    await _heartbeat(rt, world.a.installation_id, None)
    owner = gql.as_(world.tokens["owner"])
    agent = (await owner.ok(AGENT_CONNECTION))["agentConnection"]
    assert agent["state"] == "NEVER_REPORTED"
    [inst] = (await owner.ok(INSTALLATIONS))["installations"]
    assert inst["connected"] is False
    assert agent["since"] == inst["offlineSince"] is not None
    assert inst["pbxReachable"] is None


async def test_a_tenant_whose_installation_was_revoked_is_told_so(
    gql: GraphQL, clock: Clock, world: World
):
    platform = gql.as_(world.tokens["platform"])
    await platform.ok(
        "mutation($id: ID!) { revokeInstallation(id: $id) { id connected } }",
        id=str(world.a.installation_id),
    )
    agent = (await gql.as_(world.tokens["owner"]).ok(AGENT_CONNECTION))["agentConnection"]
    # Not "no installation yet": there was one, and it may no longer connect.
    assert agent == {
        "state": "REVOKED",
        "since": clock.now.isoformat(),
        "staleAt": None,
        "pollIntervalSeconds": 60,
        "installation": None,
    }
    # The revoked one is still listed, and not connected.
    rows = (await platform.ok(INSTALLATIONS, t=str(world.a.tenant_id)))["installations"]
    assert rows[0]["connected"] is False and rows[0]["alarmServiceOk"] is None


async def test_an_outsider_never_sees_another_tenants_agent(
    gql: GraphQL, rt: Runtime, clock: Clock, world: World
):
    outsider = gql.as_(world.tokens["outsider"])
    # Only tenant A's agent is silent: the outsider's own answer is about B alone.
    await _heartbeat(rt, world.b.installation_id, clock.now + timedelta(seconds=200))
    clock.advance(seconds=200)
    own = (await outsider.ok(AGENT_CONNECTION))["agentConnection"]
    assert own["state"] == "CONNECTED"
    assert own["installation"]["hostname"] == "swyx.outsider.example"
    body = await outsider(AGENT_CONNECTION, t=str(world.a.tenant_id))
    assert error_codes(body) == ["NOT_FOUND"] and body["data"] is None
    assert "owner.example" not in str(body)
    # Refused in the very words used for a tenant that does not exist.
    nowhere = await outsider(AGENT_CONNECTION, t=str(uuid.uuid4()))
    assert nowhere == body


async def test_a_platform_admin_names_the_tenant(gql: GraphQL, world: World):
    platform = gql.as_(world.tokens["platform"])
    body = await platform(AGENT_CONNECTION)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    missing = await platform(AGENT_CONNECTION, t=str(uuid.uuid4()))
    assert error_codes(missing) == ["NOT_FOUND"]
    named = await platform.ok(AGENT_CONNECTION, t=str(world.b.tenant_id))
    assert named["agentConnection"]["installation"]["hostname"] == "swyx.outsider.example"


# --- live: the subscription notices time passing and reports ---------------------------


@contextlib.asynccontextmanager
async def subscription(rt: Runtime, token: str, document: str = CHANGED) -> AsyncIterator[Any]:
    request = HTTPConnection(
        {
            "type": "http",
            "method": "GET",
            "path": "/graphql",
            "headers": [(b"authorization", f"Bearer {token}".encode())],
            "query_string": b"",
        }
    )
    context = Context(rt=rt, request=request, response=None, client="test")
    stream = await build_schema().subscribe(document, variable_values={}, context_value=context)
    assert not isinstance(stream, ExecutionResult), stream
    try:
        yield stream
    finally:
        await stream.aclose()


async def _next(stream: Any) -> dict[str, Any]:
    result: ExecutionResult = await asyncio.wait_for(anext(stream), 5)
    assert not result.errors, result.errors
    assert result.data is not None
    data: dict[str, Any] = result.data["agentConnectionChanged"]
    return data


async def test_the_live_state_turns_offline_when_the_time_passes_and_back_on_a_report(
    gql: GraphQL, rt: Runtime, clock: Clock, world: World
):
    # Half a second before the bound: nothing is sent, yet the server wakes by itself.
    last = clock.now - timedelta(seconds=2 * POLL - 0.5)
    await _heartbeat(rt, world.a.installation_id, last)
    async with subscription(rt, world.tokens["owner"]) as stream:
        first = await _next(stream)
        assert first["state"] == "CONNECTED"
        assert first["installation"]["hostname"] == "swyx.owner.example"
        clock.advance(seconds=1)
        offline = await _next(stream)
        assert offline["state"] == "OFFLINE" and same_time(offline["since"], last)
        # A report of tenant B changes nothing here; tenant A's own brings it back.
        pending = asyncio.ensure_future(_next(stream))
        await gql.as_(world.tokens["agent_b"]).ok(HEALTH, **_report(clock.now))
        await asyncio.sleep(0.2)
        assert not pending.done()
        await gql.as_(world.tokens["agent_a"]).ok(HEALTH, **_report(clock.now))
        back = await pending
        assert back["state"] == "CONNECTED" and back["since"] is None


async def test_the_live_state_sends_a_revocation_at_once(gql: GraphQL, rt: Runtime, world: World):
    async with subscription(rt, world.tokens["viewer"]) as stream:
        assert (await _next(stream))["state"] == "CONNECTED"
        await gql.as_(world.tokens["platform"]).ok(
            "mutation($id: ID!) { revokeInstallation(id: $id) { id } }",
            id=str(world.a.installation_id),
        )
        gone = await asyncio.wait_for(_next(stream), 2)
        assert gone["state"] == "REVOKED" and gone["installation"] is None


async def test_a_revoked_license_and_a_new_enrolment_reach_the_live_state_at_once(
    gql: GraphQL, rt: Runtime, world: World
):
    platform = gql.as_(world.tokens["platform"])
    async with subscription(rt, world.tokens["owner"]) as stream:
        assert (await _next(stream))["state"] == "CONNECTED"
        await platform.ok(
            "mutation($id: ID!) { revokeLicense(id: $id) { id } }", id=str(world.a.license_id)
        )
        assert (await asyncio.wait_for(_next(stream), 2))["state"] == "REVOKED"
        issued = await platform.ok(
            "mutation($t: ID!, $v: DateTime!) { issueLicense(tenantId: $t, seats: 10, "
            "validUntil: $v) { key } }",
            t=str(world.a.tenant_id),
            v=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
        )
        await gql.as_(None).ok(
            "mutation($k: String!) { registerInstallation(licenseKey: $k, "
            'hostname: "swyx2.owner.example", agentVersion: "1.0") { token } }',
            k=issued["issueLicense"]["key"],
        )
        enrolled = await asyncio.wait_for(_next(stream), 2)
    assert enrolled["state"] == "NEVER_REPORTED"
    assert enrolled["installation"]["hostname"] == "swyx2.owner.example"


@contextlib.contextmanager
def counting(rt: Runtime) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = rt.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def _reports(gql: GraphQL, clock: Clock, world: World, n: int) -> None:
    agent = gql.as_(world.tokens["agent_a"])
    for _ in range(n):
        clock.advance(seconds=1)
        await agent.ok(HEALTH, **_report(clock.now))


async def test_reports_that_leave_the_state_as_it_was_cost_the_listeners_no_query(
    gql: GraphQL, rt: Runtime, clock: Clock, world: World
):
    with counting(rt) as alone:
        await _reports(gql, clock, world, 5)
        await asyncio.sleep(0.2)
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(subscription(rt, world.tokens["owner"]))
            for _ in range(20)
        ]
        for stream in streams:
            assert (await _next(stream))["state"] == "CONNECTED"
        waiting = [asyncio.ensure_future(_next(stream)) for stream in streams]
        try:
            await asyncio.sleep(0.1)
            with counting(rt) as watched:
                await _reports(gql, clock, world, 5)
                await asyncio.sleep(0.2)  # every subscription takes its five wake-ups
            assert not any(w.done() for w in waiting)  # connected it was, connected it is
        finally:
            for w in waiting:
                w.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
    # 20 listeners, 5 reports: not one query more than the reports themselves.
    assert len(watched) == len(alone), watched[len(alone) :]


async def test_a_wake_up_of_another_kind_costs_the_other_listeners_no_query(
    gql: GraphQL, rt: Runtime, clock: Clock, world: World
):
    # A page watching its commands is not asked about its session at every report.
    with counting(rt) as alone:
        await _reports(gql, clock, world, 5)
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(
                subscription(rt, world.tokens["owner"], "subscription { commandUpdated { id } }")
            )
            for _ in range(10)
        ]
        listening = rt.hub.subscriber_count
        waiting = [asyncio.ensure_future(anext(stream)) for stream in streams]
        try:
            async with asyncio.timeout(5):  # each has read the tenant and listens
                while rt.hub.subscriber_count < listening + len(streams):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            with counting(rt) as watched:
                await _reports(gql, clock, world, 5)
                await asyncio.sleep(0.2)
            assert not any(w.done() for w in waiting)
        finally:
            for w in waiting:
                w.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
    assert len(watched) == len(alone), watched[len(alone) :]
