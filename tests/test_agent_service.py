"""The agent channel: enrolment, the command stream, results, expiry, health, revocation.

Requests go through the app over ASGI as the agent and the website would send
them; subscriptions run through the schema itself (no WebSocket), read item by
item. Where a service function is the clearest handle (the expiry sweep, the
hub between processes), it is called directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from starlette.requests import HTTPConnection
from strawberry.types import ExecutionResult

from api.models import Command, CommandStatus, Installation, License
from api.pubsub import RedisHub, tenant_commands
from api.runtime import Runtime
from api.security import hash_token
from api.services import agents
from schema.agent import subscriptions as agent_stream
from schema.context import Context
from schema.schema import build_schema
from tests.conftest import REQUIRE, GraphQL, error_codes
from tests.world import PIN, World

REDIS_URL = os.environ.get("RUNDRUF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SCHEMA = build_schema()

REGISTER = """mutation($key: String!, $host: String!, $version: String!) {
  registerInstallation(licenseKey: $key, hostname: $host, agentVersion: $version) {
    installationId tenantName token
  }
}"""
COMPLETE = """mutation($id: ID!, $ok: Boolean!, $result: JSON, $error: String) {
  completeCommand(id: $id, ok: $ok, result: $result, error: $error) {
    id type status result error completedAt
  }
}"""
HEALTH = (
    """mutation($input: HealthInput!) { reportHealth(input: $input) { pollIntervalSeconds } }"""
)
COMMAND = """query($id: ID!) {
  command(id: $id) { id type status payload result error deliveredAt completedAt }
}"""
AGENT_COMMANDS = "subscription { agentCommands { id type payload secrets createdAt } }"
COMMAND_UPDATED = "subscription { commandUpdated { id type status error } }"
DIRECTORY_CHANGED = "subscription { directoryChanged { at } }"
INSTALLATIONS = """query($t: ID) { installations(tenantId: $t) {
  id hostname agentVersion lastHeartbeatAt participantCount pbxReachable jobserviceReachable
  alarmServiceOk revokedAt
} }"""
GROUPS = "{ groups { id name members { name } broadcast { name extension pin } } }"


# --- helpers --------------------------------------------------------------------------


class Stream:
    """A subscription run through the schema without a WebSocket, read item by item."""

    def __init__(self, rt: Runtime, token: str | None, document: str, **variables: Any) -> None:
        self.rt = rt
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        request = HTTPConnection(
            {"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""}
        )
        self._context = Context(rt=rt, request=request, response=None, client="test")
        self._document = document
        self._variables = variables
        self._stream: Any = None
        self._pending: asyncio.Future[Any] | None = None

    async def __aenter__(self) -> Stream:
        self._listening = self.rt.hub.subscriber_count
        self._stream = await SCHEMA.subscribe(
            self._document, variable_values=self._variables, context_value=self._context
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending
        if not isinstance(self._stream, ExecutionResult):
            await self._stream.aclose()

    def _ask(self) -> asyncio.Future[Any]:
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(self._stream))
        return self._pending

    async def listening(self) -> None:
        """Waits until the resolver listens on the hub and has nothing more to say."""
        pending = self._ask()
        async with asyncio.timeout(5):
            while not pending.done() and self.rt.hub.subscriber_count == self._listening:
                await asyncio.wait([pending], timeout=0.01)
        await self.nothing()

    async def result(self, wait: float = 5.0) -> dict[str, Any]:
        """The next result as a response body; fails when none arrives in time."""
        pending = self._ask()
        await asyncio.wait([pending], timeout=wait)
        if not pending.done():
            pytest.fail(f"nothing arrived within {wait} s on {self._document}")
        self._pending = None
        result = pending.result()
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        return body

    async def next(self, wait: float = 5.0) -> dict[str, Any]:
        """The next item's fields (the subscription's root field)."""
        body = await self.result(wait)
        assert not body.get("errors"), body
        [value] = body["data"].values()
        item: dict[str, Any] = value
        return item

    async def nothing(self, wait: float = 0.3) -> None:
        pending = self._ask()
        await asyncio.wait([pending], timeout=wait)
        assert not pending.done(), f"unexpected: {pending.result()}"

    async def ended(self, wait: float = 5.0) -> bool:
        pending = self._ask()
        await asyncio.wait([pending], timeout=wait)
        if not pending.done():
            return False
        self._pending = None
        try:
            pending.result()
        except StopAsyncIteration:
            return True
        return False


def world_directory() -> dict[str, Any]:
    """Tenant A's PBX directory as the agent reports it (what tests/world.py mirrors)."""
    return {
        "users": [
            {"id": f"u{i}", "name": f"Member {i}", "extension": f"2{i:02d}", "state": 2}
            for i in range(3)
        ]
        + [
            {
                "id": "agent",
                "name": "Rundruf Brandschutz",
                "extension": "299",
                "callroutingOnly": True,
            }
        ],
        "groups": [
            {"id": "g1", "name": "Brandschutz", "memberIds": ["u0", "u1", "u2"]},
            {"id": "g2", "name": "Empfang", "memberIds": []},
        ],
    }


async def create_group(gql: GraphQL, token: str, name: str | None = None) -> str:
    """An open command, made the way the website makes one; returns its id."""
    data = await gql.as_(token).ok(
        "mutation($n: String!) { createGroup(name: $n) { id status } }",
        n=name or f"Gruppe {uuid.uuid4().hex[:8]}",
    )
    assert data["createGroup"]["status"] == "PENDING"
    command_id: str = data["createGroup"]["id"]
    return command_id


async def command(gql: GraphQL, world: World, command_id: str) -> dict[str, Any]:
    data = await gql.as_(world.tokens["owner"]).ok(COMMAND, id=command_id)
    found: dict[str, Any] = data["command"]
    return found


async def complete(
    gql: GraphQL, token: str, command_id: str, ok: bool = True, **fields: Any
) -> dict[str, Any]:
    data = await gql.as_(token).ok(COMPLETE, id=command_id, ok=ok, **fields)
    done: dict[str, Any] = data["completeCommand"]
    return done


def health(reported_at: datetime, **flags: Any) -> dict[str, Any]:
    values = {
        "agentVersion": "2.0.0",
        "pbxReachable": True,
        "jobserviceReachable": True,
        "alarmServiceOk": True,
        "participantCount": 3,
    }
    values.update(flags)
    return {"input": {**values, "reportedAt": reported_at.isoformat()}}


async def installation(gql: GraphQL, world: World, installation_id: Any) -> dict[str, Any]:
    data = await gql.as_(world.tokens["platform"]).ok(INSTALLATIONS, t=str(world.a.tenant_id))
    [found] = [i for i in data["installations"] if i["id"] == str(installation_id)]
    return found


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def everything_as_text(rt: Runtime) -> str:
    """Every row of every table as text (to search for what must never be stored)."""
    async with rt.db.reading() as s:
        tables = await s.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        parts = []
        for table in list(tables):
            rows = await s.scalars(text(f'SELECT t::text FROM "{table}" AS t'))
            parts.extend(rows)
    return "\n".join(parts)


async def installation_count(rt: Runtime) -> int:
    async with rt.db.reading() as s:
        return len(list(await s.scalars(select(Installation.id))))


# --- enrolment ------------------------------------------------------------------------


async def test_enrolment_returns_the_token_once_and_stores_only_its_hash(gql, rt, world):
    data = await gql.ok(
        REGISTER, key=world.tokens["license_a"], host="swyx2.owner.example", version="1.4.0"
    )
    enrolled = data["registerInstallation"]
    token = enrolled["token"]
    assert enrolled["tenantName"] == "Owner AG"
    assert token.startswith(agents.AGENT_TOKEN_PREFIX) and len(token) > 40
    async with rt.db.reading() as s:
        inst = await s.get(Installation, uuid.UUID(enrolled["installationId"]))
    assert inst is not None
    assert inst.tenant_id == world.a.tenant_id and inst.license_id == world.a.license_id
    assert inst.token_hash != token
    assert inst.token_hash == hash_token(token)
    assert token not in await everything_as_text(rt)
    # Nothing shows it again.
    listed = await gql.as_(world.tokens["platform"]).ok(INSTALLATIONS, t=str(world.a.tenant_id))
    assert token not in json.dumps(listed)
    assert enrolled["installationId"] in json.dumps(listed)
    # The token works as the new installation's credential, in its tenant.
    ack = await gql.as_(token).ok(HEALTH, **health(rt.clock()))
    assert ack["reportHealth"]["pollIntervalSeconds"] == 60
    # A second enrolment is another installation with another token.
    again = await gql.ok(
        REGISTER, key=world.tokens["license_a"], host="swyx2.owner.example", version="1.4.0"
    )
    assert again["registerInstallation"]["token"] != token
    assert again["registerInstallation"]["installationId"] != enrolled["installationId"]


async def _refused_enrolment(gql, rt, world, code: str, key: str | None = None) -> None:
    before = await installation_count(rt)
    body = await gql(REGISTER, key=key or world.tokens["license_a"], host="h", version="1")
    assert error_codes(body) == [code], body
    assert body["errors"][0]["extensions"]["field"] == "licenseKey"
    assert body["data"] is None
    assert await installation_count(rt) == before


async def test_enrolment_with_a_revoked_license_is_bad_input(gql, rt, world):
    await gql.as_(world.tokens["platform"]).ok(
        "mutation($id: ID!) { revokeLicense(id: $id) { revokedAt } }", id=str(world.a.license_id)
    )
    await _refused_enrolment(gql, rt, world, "BAD_USER_INPUT")


async def test_enrolment_with_an_expired_license_is_bad_input(gql, rt, world, clock):
    async with rt.db.transaction() as s:
        await s.execute(
            update(License)
            .where(License.id == world.a.license_id)
            .values(valid_until=clock.now - timedelta(seconds=1))
        )
    await _refused_enrolment(gql, rt, world, "BAD_USER_INPUT")


async def test_enrolment_with_an_unknown_key_is_not_found(gql, rt, world):
    await _refused_enrolment(gql, rt, world, "NOT_FOUND", key="rdl_no-such-license")


async def test_enrolment_into_a_deactivated_tenant_is_not_found(gql, rt, world):
    await gql.as_(world.tokens["platform"]).ok(
        "mutation($id: ID!) { deactivateTenant(id: $id) { active } }", id=str(world.a.tenant_id)
    )
    await _refused_enrolment(gql, rt, world, "NOT_FOUND")


# --- the command stream ---------------------------------------------------------------


async def test_the_stream_replays_open_commands_oldest_first_and_marks_them_delivered(
    gql, rt, world, clock
):
    owner = world.tokens["owner"]
    overdue = await create_group(gql, owner)  # open, but past its time once the clock moves
    clock.advance(minutes=16)
    first = await create_group(gql, owner)
    clock.advance(seconds=1)
    second = await create_group(gql, owner)
    clock.advance(seconds=1)
    done = await create_group(gql, owner)
    await complete(gql, world.tokens["agent_a"], done)
    clock.advance(seconds=1)
    third = await create_group(gql, owner)

    async with Stream(rt, world.tokens["agent_a"], AGENT_COMMANDS) as stream:
        got = [await stream.next() for _ in range(3)]
        await stream.nothing()
    assert [c["id"] for c in got] == [first, second, third]
    assert all(c["type"] == "createGroup" for c in got)
    for command_id in (first, second, third):
        shown = await command(gql, world, command_id)
        assert shown["status"] == "DELIVERED"
        assert at(shown["deliveredAt"]) == clock.now
    # The completed one and the overdue one were not sent (and the overdue one stays
    # undelivered until the expiry sweep).
    assert (await command(gql, world, done))["status"] == "SUCCEEDED"
    assert (await command(gql, world, overdue))["status"] == "PENDING"
    assert str(world.a.command_id) not in json.dumps(got)


async def test_a_reconnect_replays_delivered_but_uncompleted_commands(gql, rt, world, clock):
    agent = world.tokens["agent_a"]
    first = await create_group(gql, world.tokens["owner"])
    clock.advance(seconds=1)
    second = await create_group(gql, world.tokens["owner"])
    async with Stream(rt, agent, AGENT_COMMANDS) as stream:
        assert (await stream.next())["id"] == first
        assert (await stream.next())["id"] == second
    await complete(gql, agent, first)
    # The connection dropped before `second` was done: the next one gets it again.
    async with Stream(rt, agent, AGENT_COMMANDS) as stream:
        assert (await stream.next())["id"] == second
        await stream.nothing()
    assert (await command(gql, world, second))["status"] == "DELIVERED"


async def test_each_command_comes_with_the_servers_clock_as_it_is_sent(gql, rt, world, clock):
    """The agent measures a command's age in the server's clock (issue 14, point 11):
    a replayed command carries the time of this sending, not of the first."""
    agent = world.tokens["agent_a"]
    query = "subscription { agentCommands { id createdAt serverTime } }"
    created = await create_group(gql, world.tokens["owner"])
    clock.advance(seconds=40)
    async with Stream(rt, agent, query) as stream:
        first = await stream.next()
    clock.advance(seconds=30)
    async with Stream(rt, agent, query) as stream:
        again = await stream.next()
    assert first["id"] == again["id"] == created
    assert at(first["serverTime"]) - at(first["createdAt"]) == timedelta(seconds=40)
    assert at(again["serverTime"]) == clock.now


async def test_a_listening_stream_gets_a_new_command_at_once(gql, rt, world):
    async with Stream(rt, world.tokens["agent_a"], AGENT_COMMANDS) as stream:
        await stream.listening()
        command_id = await create_group(gql, world.tokens["owner"], "Live")
        # Well before the stream's own safety poll: the wake-up carried it.
        item = await stream.next(wait=5)
        assert item["id"] == command_id
        assert item["payload"]["name"] == "Live"


async def test_a_lost_wake_up_delays_a_command_but_never_loses_it(gql, rt, world, monkeypatch):
    monkeypatch.setattr(agent_stream, "SAFETY_POLL", (0.2, 0.2))
    async with Stream(rt, world.tokens["agent_a"], AGENT_COMMANDS) as stream:
        await stream.listening()
        async with rt.db.transaction() as s:  # committed, but no wake-up is sent
            lost = Command(
                tenant_id=world.a.tenant_id,
                type="syncDirectory",
                payload={},
                status=CommandStatus.PENDING,
                created_at=rt.clock(),
                expires_at=rt.clock() + timedelta(minutes=15),
            )
            s.add(lost)
        assert (await stream.next())["id"] == str(lost.id)


async def test_tenant_bs_agent_never_sees_tenant_as_commands(gql, rt, world, clock):
    a_open = await create_group(gql, world.tokens["owner"], "Nur A")
    clock.advance(seconds=1)
    async with Stream(rt, world.tokens["agent_b"], AGENT_COMMANDS) as stream:
        await stream.listening()  # tenant A's open command was not replayed
        await create_group(gql, world.tokens["owner"], "Noch eine in A")
        b_open = await create_group(gql, world.tokens["outsider"], "Nur B")
        item = await stream.next()
        assert item["id"] == b_open
        await stream.nothing()
    shown = await command(gql, world, a_open)
    assert shown["status"] == "PENDING"  # nobody took it
    async with Stream(rt, world.tokens["agent_a"], AGENT_COMMANDS) as stream:
        assert (await stream.next())["id"] == a_open


async def test_the_agent_gets_the_secrets_the_website_never_shows(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(
        "mutation($g: ID!, $p: String) { updateBroadcastAgent(groupId: $g, pin: $p) { id } }",
        g=str(world.a.group_id),
        p="86420",
    )
    command_id = data["updateBroadcastAgent"]["id"]
    async with Stream(rt, world.tokens["agent_a"], AGENT_COMMANDS) as stream:
        item = await stream.next()
    assert item["id"] == command_id
    assert item["secrets"] == {"pin": "86420"}
    assert "86420" not in json.dumps(await command(gql, world, command_id))


# --- completing a command -------------------------------------------------------------


async def test_completing_twice_changes_nothing_the_second_time(gql, rt, world):
    owner, agent = gql.as_(world.tokens["owner"]), world.tokens["agent_a"]
    data = await owner.ok("mutation { verifyPbxCredentials { command { id } } }")
    command_id = data["verifyPbxCredentials"]["command"]["id"]
    first = await complete(gql, agent, command_id, result={"pbxVersion": "14.10"})
    assert first["status"] == "SUCCEEDED"
    assert first["result"] == {"pbxVersion": "14.10"}
    changed = world_directory()
    changed["users"] = changed["users"][:1]
    second = await complete(
        gql,
        agent,
        command_id,
        ok=False,
        result={"reason": "refused", "directory": changed},
        error="second thoughts",
    )
    assert second == first
    shown = await command(gql, world, command_id)
    assert (shown["status"], shown["result"], shown["error"]) == (
        "SUCCEEDED",
        {"pbxVersion": "14.10"},
        None,
    )
    assert shown["completedAt"] == first["completedAt"]
    # Not applied twice: still verified, and the mirror was not replaced.
    settings = await owner.ok("{ pbxSettings { verificationState verificationError } }")
    assert settings["pbxSettings"] == {"verificationState": "VERIFIED", "verificationError": None}
    users = await owner.ok("{ pbxUsers { name } }")
    assert len(users["pbxUsers"]) == 4


async def test_completing_another_tenants_command_is_not_found(gql, rt, world):
    command_id = await create_group(gql, world.tokens["owner"])
    before = await command(gql, world, command_id)
    for target in (command_id, str(world.a.command_id), str(uuid.uuid4()), "not-an-id"):
        body = await gql.as_(world.tokens["agent_b"])(COMPLETE, id=target, ok=True)
        assert error_codes(body) == ["NOT_FOUND"], body
        assert body["data"] is None
    assert await command(gql, world, command_id) == before


# --- results that change the mirror ------------------------------------------------------


async def test_verified_credentials_replace_the_mirror_with_the_snapshot(gql, rt, world, clock):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok("mutation { verifyPbxCredentials { command { id } } }")
    command_id = data["verifyPbxCredentials"]["command"]["id"]
    snapshot = world_directory()
    snapshot["users"] = [
        {"id": "u0", "name": "Member Null", "extension": "200", "state": 1},
        {"id": "u1", "name": "Member 1", "extension": "201"},
        {"id": "u3", "name": "Neu Drei", "extension": "203", "description": "neu"},
        snapshot["users"][3],  # the broadcast agent
    ]  # u2 is gone
    snapshot["groups"] = [
        {"id": "g1", "name": "Brandschutz", "memberIds": ["u1", "u3"]},
        {"id": "g3", "name": "Vertrieb", "memberIds": ["u0", "u1", "unknown"]},
    ]  # g2 is gone
    b_before = await gql.as_(world.tokens["outsider"]).ok(GROUPS)

    async with Stream(rt, world.tokens["owner"], DIRECTORY_CHANGED) as changes:
        await changes.listening()
        done = await complete(
            gql, world.tokens["agent_a"], command_id, result={"directory": snapshot}
        )
        assert at((await changes.next())["at"]) == clock.now

    assert done["status"] == "SUCCEEDED"
    assert "directory" not in json.dumps(done["result"])  # kept in the mirror only
    settings = await owner.ok("{ pbxSettings { verificationState verificationError verifiedAt } }")
    assert settings["pbxSettings"]["verificationState"] == "VERIFIED"
    assert settings["pbxSettings"]["verificationError"] is None
    assert at(settings["pbxSettings"]["verifiedAt"]) == clock.now
    users = await owner.ok("{ pbxUsers { name extension } }")
    assert sorted((u["name"], u["extension"]) for u in users["pbxUsers"]) == [
        ("Member 1", "201"),
        ("Member Null", "200"),
        ("Neu Drei", "203"),
        ("Rundruf Brandschutz", "299"),
    ]
    groups = {g["name"]: g for g in (await owner.ok(GROUPS))["groups"]}
    assert set(groups) == {"Brandschutz", "Vertrieb"}
    assert [m["name"] for m in groups["Brandschutz"]["members"]] == ["Member 1", "Neu Drei"]
    assert [m["name"] for m in groups["Vertrieb"]["members"]] == ["Member 1", "Member Null"]
    # The broadcast group on the kept group is kept, with its agent and PIN.
    assert groups["Brandschutz"]["broadcast"]["extension"] == "299"
    assert groups["Brandschutz"]["broadcast"]["pin"] == PIN
    assert groups["Brandschutz"]["id"] == str(world.a.group_id)
    # History keeps the name of a member who left the PBX.
    history = await owner.ok(
        "query($id: ID!) { broadcast(id: $id) { attempts { memberName member { id } } } }",
        id=str(world.a.broadcast_id),
    )
    gone = [a for a in history["broadcast"]["attempts"] if a["memberName"] == "Member 2"]
    assert gone == [{"memberName": "Member 2", "member": None}]
    # Tenant B's mirror is untouched.
    assert await gql.as_(world.tokens["outsider"]).ok(GROUPS) == b_before


async def test_refused_credentials_fail_with_the_reason(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok("mutation { verifyPbxCredentials { command { id } } }")
    command_id = data["verifyPbxCredentials"]["command"]["id"]
    async with Stream(rt, world.tokens["owner"], COMMAND_UPDATED) as updates:
        await updates.listening()
        done = await complete(
            gql,
            world.tokens["agent_a"],
            command_id,
            ok=False,
            result={"reason": "Anmeldung abgelehnt: falsches Kennwort"},
            error="ConfigDataStore: login failed (401)",
        )
        update_seen = await updates.next()
    assert done["status"] == "FAILED"
    assert update_seen == {
        "id": command_id,
        "type": "verifyPbxCredentials",
        "status": "FAILED",
        "error": "ConfigDataStore: login failed (401)",
    }
    settings = await owner.ok("{ pbxSettings { verificationState verificationError verifiedAt } }")
    assert settings["pbxSettings"] == {
        "verificationState": "FAILED",
        # The agent's error is the reason the user reads (agents send it there).
        "verificationError": "ConfigDataStore: login failed (401)",
        "verifiedAt": None,
    }
    shown = await command(gql, world, command_id)
    assert shown["status"] == "FAILED"
    assert shown["error"] == "ConfigDataStore: login failed (401)"


async def test_enabling_a_broadcast_creates_it_with_the_sealed_pin(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(
        "mutation($g: ID!) { enableBroadcast(groupId: $g) { id } }", g=str(world.a.plain_group_id)
    )
    command_id = data["enableBroadcast"]["id"]
    async with Stream(rt, world.tokens["agent_a"], AGENT_COMMANDS) as stream:
        sent = await stream.next()
    assert sent["id"] == command_id
    pin = sent["secrets"]["pin"]
    assert pin.isdigit() and len(pin) == 6
    snapshot = world_directory()
    snapshot["users"].append(
        {"id": "agent-g2", "name": "Rundruf Empfang", "extension": "298", "callroutingOnly": True}
    )
    done = await complete(
        gql,
        world.tokens["agent_a"],
        command_id,
        result={"agentUserId": "agent-g2", "extension": "298", "directory": snapshot},
    )
    assert done["status"] == "SUCCEEDED"
    assert done["result"] == {"agentUserId": "agent-g2", "extension": "298"}
    groups = {g["name"]: g for g in (await owner.ok(GROUPS))["groups"]}
    assert groups["Empfang"]["broadcast"] == {
        "name": "Rundruf Empfang",
        "extension": "298",
        "pin": pin,
    }
    viewer = {g["name"]: g for g in (await gql.as_(world.tokens["viewer"]).ok(GROUPS))["groups"]}
    assert viewer["Empfang"]["broadcast"]["pin"] is None
    assert viewer["Empfang"]["broadcast"]["extension"] == "298"


async def test_disabling_a_broadcast_removes_it_once_the_agent_reports(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(
        "mutation($g: ID!) { disableBroadcast(groupId: $g) { id payload } }",
        g=str(world.a.group_id),
    )
    command_id = data["disableBroadcast"]["id"]
    assert data["disableBroadcast"]["payload"]["agentPbxId"] == "agent"
    groups = {g["name"]: g for g in (await owner.ok(GROUPS))["groups"]}
    assert groups["Brandschutz"]["broadcast"] is not None  # until the agent reports
    snapshot = world_directory()
    snapshot["users"] = snapshot["users"][:3]  # the agent user was deleted
    await complete(gql, world.tokens["agent_a"], command_id, result={"directory": snapshot})
    groups = {g["name"]: g for g in (await owner.ok(GROUPS))["groups"]}
    assert groups["Brandschutz"]["broadcast"] is None
    assert len(groups["Brandschutz"]["members"]) == 3
    # The history of its broadcasts stays.
    history = await owner.ok(
        "query($id: ID!) { broadcast(id: $id) { id groupName } }", id=str(world.a.broadcast_id)
    )
    assert history["broadcast"]["groupName"] == "Brandschutz"


async def test_updating_the_broadcast_agent_changes_the_shown_pin(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    mutation = (
        "mutation($g: ID!, $e: String, $p: String) "
        "{ updateBroadcastAgent(groupId: $g, extension: $e, pin: $p) { id } }"
    )
    data = await owner.ok(mutation, g=str(world.a.group_id), p="135790")
    await complete(gql, world.tokens["agent_a"], data["updateBroadcastAgent"]["id"], result={})
    groups = {g["name"]: g for g in (await owner.ok(GROUPS))["groups"]}
    assert groups["Brandschutz"]["broadcast"]["pin"] == "135790"
    assert groups["Brandschutz"]["broadcast"]["extension"] == "299"

    data = await owner.ok(mutation, g=str(world.a.group_id), e="298", p="2468")
    await complete(
        gql,
        world.tokens["agent_a"],
        data["updateBroadcastAgent"]["id"],
        result={"extension": "298"},
    )
    groups = {g["name"]: g for g in (await owner.ok(GROUPS))["groups"]}
    assert groups["Brandschutz"]["broadcast"]["pin"] == "2468"
    assert groups["Brandschutz"]["broadcast"]["extension"] == "298"

    # A failed change leaves the PIN as it was.
    data = await owner.ok(mutation, g=str(world.a.group_id), p="99999")
    await complete(
        gql, world.tokens["agent_a"], data["updateBroadcastAgent"]["id"], ok=False, error="busy"
    )
    groups = {g["name"]: g for g in (await owner.ok(GROUPS))["groups"]}
    assert groups["Brandschutz"]["broadcast"]["pin"] == "2468"


# --- expiry ---------------------------------------------------------------------------


async def test_overdue_commands_expire_with_a_reason_the_user_sees(gql, rt, world, clock):
    owner, agent = world.tokens["owner"], world.tokens["agent_a"]
    delivered = await create_group(gql, owner)
    async with Stream(rt, agent, AGENT_COMMANDS) as stream:
        assert (await stream.next())["id"] == delivered
    pending = await create_group(gql, owner)
    done = await create_group(gql, owner)
    finished = await complete(gql, agent, done)
    in_b = await create_group(gql, world.tokens["outsider"])
    clock.advance(minutes=14)
    assert await agents.expire_overdue(rt) == 0  # not yet
    clock.advance(minutes=2)

    async with Stream(rt, owner, COMMAND_UPDATED) as updates:
        await updates.listening()
        assert await agents.expire_overdue(rt) == 3
        seen = {(await updates.next())["id"] for _ in range(2)}
        assert seen == {delivered, pending}
        await updates.nothing()  # tenant B's expiry is not tenant A's news

    for command_id in (delivered, pending):
        shown = await command(gql, world, command_id)
        assert shown["status"] == "EXPIRED"
        assert "no agent completed this command in time" in shown["error"]
        assert at(shown["completedAt"]) == clock.now
    untouched = await command(gql, world, done)
    assert untouched["status"] == "SUCCEEDED" and untouched["error"] is None
    assert untouched["completedAt"] == finished["completedAt"]
    seeded = await command(gql, world, str(world.a.command_id))
    assert seeded["status"] == "SUCCEEDED"
    b_shown = await gql.as_(world.tokens["outsider"]).ok(COMMAND, id=in_b)
    assert b_shown["command"]["status"] == "EXPIRED"
    assert await agents.expire_overdue(rt) == 0
    # Expired commands are not sent again, and a late completion changes nothing.
    async with Stream(rt, agent, AGENT_COMMANDS) as stream:
        await stream.listening()
    late = await complete(gql, agent, pending)
    assert late["status"] == "EXPIRED"


# --- health ---------------------------------------------------------------------------


async def test_a_health_report_stores_flags_and_heartbeat(gql, rt, world, clock):
    agent = gql.as_(world.tokens["agent_a"])
    clock.advance(minutes=3)
    ack = await agent.ok(
        HEALTH,
        **health(
            clock.now,
            agentVersion="2.1.0",
            pbxReachable=False,
            jobserviceReachable=None,
            alarmServiceOk=True,
            participantCount=7,
        ),
    )
    assert ack["reportHealth"] == {"pollIntervalSeconds": 60}
    shown = await installation(gql, world, world.a.installation_id)
    assert shown["agentVersion"] == "2.1.0"
    assert shown["pbxReachable"] is False
    assert shown["jobserviceReachable"] is None
    assert shown["alarmServiceOk"] is True
    assert shown["participantCount"] == 7
    assert at(shown["lastHeartbeatAt"]) == clock.now
    # The answer follows the tenant's poll interval.
    await gql.as_(world.tokens["owner"]).ok(
        "mutation { updatePbxSettings(input: { pollIntervalSeconds: 120 }) { command { id } } }"
    )
    clock.advance(seconds=5)
    ack = await agent.ok(HEALTH, **health(clock.now))
    assert ack["reportHealth"] == {"pollIntervalSeconds": 120}


async def test_an_older_report_changes_nothing(gql, rt, world, clock):
    agent = gql.as_(world.tokens["agent_a"])
    reported = clock.now
    await agent.ok(HEALTH, **health(reported, participantCount=5, agentVersion="2.0.0"))
    before = await installation(gql, world, world.a.installation_id)
    clock.advance(seconds=10)
    late = health(reported - timedelta(seconds=5), participantCount=1, pbxReachable=False)
    assert (await agent.ok(HEALTH, **late))["reportHealth"] == {"pollIntervalSeconds": 60}
    assert await installation(gql, world, world.a.installation_id) == before
    # A repeat of the same report changes nothing either.
    await agent.ok(HEALTH, **health(reported, participantCount=2))
    assert await installation(gql, world, world.a.installation_id) == before


async def test_a_stale_report_updates_flags_but_not_the_heartbeat(gql, rt, world, clock):
    agent = gql.as_(world.tokens["agent_a"])
    heartbeat = (await installation(gql, world, world.a.installation_id))["lastHeartbeatAt"]
    clock.advance(minutes=5)
    stale = health(clock.now - timedelta(seconds=2 * 60 + 1), participantCount=9)
    await agent.ok(HEALTH, **stale)
    async with rt.db.reading() as s:
        stored = await s.get(Installation, world.a.installation_id)
        assert stored is not None and stored.participant_count == 9
    shown = await installation(gql, world, world.a.installation_id)
    assert shown["lastHeartbeatAt"] == heartbeat
    # The heartbeat is too old to vouch for it: the website reads it as unknown.
    assert shown["participantCount"] is None
    # A report just within two intervals is fresh.
    clock.advance(seconds=1)
    await agent.ok(HEALTH, **health(clock.now - timedelta(seconds=2 * 60), participantCount=8))
    shown = await installation(gql, world, world.a.installation_id)
    assert shown["participantCount"] == 8
    assert at(shown["lastHeartbeatAt"]) == clock.now


async def test_a_report_from_a_clock_far_ahead_does_not_silence_the_next_ones(gql, world, clock):
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(HEALTH, **health(clock.now + timedelta(hours=2), participantCount=11))
    clock.advance(seconds=60)  # the agent's clock was corrected
    await agent.ok(HEALTH, **health(clock.now, participantCount=12, pbxReachable=False))
    shown = await installation(gql, world, world.a.installation_id)
    assert shown["participantCount"] == 12
    assert shown["pbxReachable"] is False
    assert at(shown["lastHeartbeatAt"]) == clock.now


async def test_a_report_without_a_time_zone_is_bad_input(gql, world, clock):
    body = await gql.as_(world.tokens["agent_a"])(HEALTH, **health(clock.now.replace(tzinfo=None)))
    assert error_codes(body) == ["BAD_USER_INPUT"], body


# --- revocation -----------------------------------------------------------------------


async def _agent_is_refused(gql, rt, world, token: str) -> None:
    body = await gql.as_(token)(HEALTH, **health(rt.clock()))
    assert error_codes(body) == ["UNAUTHENTICATED"], body
    body = await gql.as_(token)(COMPLETE, id=str(world.a.command_id), ok=True)
    assert error_codes(body) == ["UNAUTHENTICATED"], body
    async with Stream(rt, token, AGENT_COMMANDS) as stream:
        body = await stream.result()
    assert error_codes(body) == ["UNAUTHENTICATED"], body


async def _agent_works(gql, rt, world, token: str) -> None:
    await gql.as_(token).ok(HEALTH, **health(rt.clock()))


async def test_a_revoked_installation_is_refused_at_once(gql, rt, world):
    agent = world.tokens["agent_a"]
    await _agent_works(gql, rt, world, agent)
    async with Stream(rt, agent, AGENT_COMMANDS) as stream:
        await stream.listening()
        await gql.as_(world.tokens["platform"]).ok(
            "mutation($id: ID!) { revokeInstallation(id: $id) { revokedAt } }",
            id=str(world.a.installation_id),
        )
        assert await stream.ended(), "the open stream of a revoked agent goes on"
    await _agent_is_refused(gql, rt, world, agent)
    await _agent_works(gql, rt, world, world.tokens["agent_b"])


async def test_revoking_the_license_refuses_its_agents(gql, rt, world):
    agent = world.tokens["agent_a"]
    async with Stream(rt, agent, AGENT_COMMANDS) as stream:
        await stream.listening()
        await gql.as_(world.tokens["platform"]).ok(
            "mutation($id: ID!) { revokeLicense(id: $id) { revokedAt } }",
            id=str(world.a.license_id),
        )
        assert await stream.ended(), "the open stream of a revoked license goes on"
    await _agent_is_refused(gql, rt, world, agent)
    await _agent_works(gql, rt, world, world.tokens["agent_b"])


async def test_a_lost_revocation_is_caught_by_the_recheck(gql, rt, world, monkeypatch):
    monkeypatch.setattr(agent_stream, "SAFETY_POLL", (0.05, 0.05))
    monkeypatch.setattr(agent_stream, "RECHECK", (0.1, 0.1))
    async with Stream(rt, world.tokens["agent_a"], AGENT_COMMANDS) as stream:
        await stream.listening()
        async with rt.db.transaction() as s:  # revoked without the control message
            await s.execute(
                update(Installation)
                .where(Installation.id == world.a.installation_id)
                .values(revoked_at=rt.clock())
            )
        assert await stream.ended(), "the stream of a revoked agent goes on"


async def test_an_expired_license_keeps_the_agent_running(gql, rt, world, clock):
    # Made while the license was valid (changes need one; running them does not).
    command_id = await create_group(gql, world.tokens["owner"])
    async with rt.db.transaction() as s:
        await s.execute(
            update(License)
            .where(License.id == world.a.license_id)
            .values(valid_until=clock.now - timedelta(days=1))
        )
    agent = world.tokens["agent_a"]
    await _agent_works(gql, rt, world, agent)
    async with Stream(rt, agent, AGENT_COMMANDS) as stream:
        assert (await stream.next())["id"] == command_id
    assert (await complete(gql, agent, command_id))["status"] == "SUCCEEDED"


async def test_a_deactivated_tenants_agent_is_refused(gql, rt, world):
    await gql.as_(world.tokens["platform"]).ok(
        "mutation($id: ID!) { deactivateTenant(id: $id) { active } }", id=str(world.a.tenant_id)
    )
    await _agent_is_refused(gql, rt, world, world.tokens["agent_a"])


# --- the hub between processes ------------------------------------------------------------


async def _redis_up() -> bool:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_the_redis_hub_carries_a_wake_up_from_one_process_to_another():
    if not await _redis_up():
        if REQUIRE:
            pytest.fail(f"Redis is required but not reachable at {REDIS_URL}")
        pytest.skip("Redis is not running")
    sender, receiver = RedisHub(REDIS_URL), RedisHub(REDIS_URL)  # two processes
    await sender.start()
    await receiver.start()
    try:
        channel, other = tenant_commands(uuid.uuid4()), tenant_commands(uuid.uuid4())
        async with (
            receiver.subscribe([channel]) as inbox,
            receiver.subscribe([other]) as elsewhere,
            sender.subscribe([channel]) as own,
        ):
            await sender.publish(channel, "wake up")
            assert await inbox.get(5) == (channel, "wake up")
            # The sender's own subscribers hear it through Redis as well, once.
            assert await own.get(5) == (channel, "wake up")
            assert await own.get(0.3) is None
            assert inbox.drain() == []
            assert elsewhere.drain() == []
    finally:
        await sender.stop()
        await receiver.stop()


async def test_commands_in_the_database_are_the_truth(rt, world):
    # What the stream rereads: the service call itself takes only open, unexpired ones.
    agent = agents.Agent(installation_id=world.a.installation_id, tenant_id=world.a.tenant_id)
    assert await agents.take_open_commands(rt, agent, set()) == []
    async with rt.db.transaction() as s:
        s.add(
            Command(
                tenant_id=world.a.tenant_id,
                type="syncDirectory",
                payload={},
                status=CommandStatus.PENDING,
                created_at=rt.clock(),
                expires_at=rt.clock() + timedelta(minutes=1),
            )
        )
    [delivery] = await agents.take_open_commands(rt, agent, set())
    assert delivery.command.status is CommandStatus.DELIVERED
    assert delivery.command.installation_id == world.a.installation_id
    assert await agents.take_open_commands(rt, agent, {delivery.command.id}) == []
