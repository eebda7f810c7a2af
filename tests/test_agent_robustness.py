"""Edge cases of the agent channel on the server: races, retries, stale answers."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select, update

from api.models import Command, CommandStatus, Installation, PbxSettings, VerificationState
from api.services import agents
from tests.conftest import error_codes
from tests.test_agent_service import complete, create_group, world_directory
from tests.world import wav_bytes


async def test_two_completions_racing_apply_once(gql, rt, world):
    command_id = await create_group(gql, world.tokens["owner"])
    agent = await agents.agent_for_token(rt, world.tokens["agent_a"])
    first, second = await asyncio.gather(
        agents.complete(rt, agent, uuid.UUID(command_id), True, {"n": 1}, None),
        agents.complete(rt, agent, uuid.UUID(command_id), False, {"n": 2}, "late"),
    )
    assert first.status == second.status
    async with rt.db.reading() as s:
        stored = await s.get(Command, uuid.UUID(command_id))
    assert stored.result in ({"n": 1}, {"n": 2})
    assert stored.status is (
        CommandStatus.SUCCEEDED if stored.result == {"n": 1} else CommandStatus.FAILED
    )


async def test_a_new_enrolment_retires_the_old_agent(gql, rt, world):
    data = await gql.ok(
        'mutation($k: String!) { registerInstallation(licenseKey: $k, hostname: "neu", '
        'agentVersion: "1") { token } }',
        k=world.tokens["license_a"],
    )
    new_token = data["registerInstallation"]["token"]
    body = await gql.as_(world.tokens["agent_a"])(
        'mutation { reportHealth(input: {agentVersion: "1", pbxReachable: true, '
        'alarmServiceOk: true, participantCount: 1, reportedAt: "2030-01-01T00:00:00Z"}) '
        "{ pollIntervalSeconds } }"
    )
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert await agents.agent_for_token(rt, new_token)
    async with rt.db.reading() as s:
        live = list(
            await s.scalars(
                select(Installation).where(
                    Installation.tenant_id == world.a.tenant_id, Installation.revoked_at.is_(None)
                )
            )
        )
    assert [i.hostname for i in live] == ["neu"]


async def test_a_command_delivered_to_another_installation_is_not_delivered_again(gql, rt, world):
    command_id = uuid.UUID(await create_group(gql, world.tokens["owner"]))
    async with rt.db.transaction() as s:
        other = Installation(
            tenant_id=world.a.tenant_id,
            license_id=world.a.license_id,
            hostname="zweite",
            token_hash="x" * 64,
        )
        s.add(other)
        await s.flush()
        await s.execute(
            update(Command)
            .where(Command.id == command_id)
            .values(status=CommandStatus.DELIVERED, installation_id=other.id)
        )
    agent = await agents.agent_for_token(rt, world.tokens["agent_a"])
    assert [d.command.id for d in await agents.take_open_commands(rt, agent, set())] == []


async def test_a_stale_credentials_check_does_not_verify_new_settings(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok("mutation { verifyPbxCredentials { command { id } } }")
    command_id = data["verifyPbxCredentials"]["command"]["id"]
    await owner.ok(
        'mutation { updatePbxSettings(input: {host: "neu.example"}) { settings { host } } }'
    )
    await complete(
        gql, world.tokens["agent_a"], command_id, ok=True, result={"directory": world_directory()}
    )
    async with rt.db.reading() as s:
        settings = await s.get(PbxSettings, world.a.tenant_id)
    assert settings.verification_state is VerificationState.UNVERIFIED


async def test_a_late_answer_to_an_expired_command_still_refreshes_the_directory(
    gql, rt, world, clock
):
    command_id = await create_group(gql, world.tokens["owner"], "Spät")
    clock.advance(minutes=16)
    await agents.expire_overdue(rt)
    directory = world_directory()
    directory["groups"].append({"id": "g9", "name": "Spät", "memberIds": []})
    done = await complete(
        gql, world.tokens["agent_a"], command_id, ok=True, result={"directory": directory}
    )
    assert done["status"] == "EXPIRED"
    names = {
        g["name"]
        for g in (await gql.as_(world.tokens["owner"]).ok("{ groups { name } }"))["groups"]
    }
    assert "Spät" in names


async def test_the_agent_downloads_its_tenants_audio_and_no_other(client, world):
    own = await client.get(
        f"/api/audio/{world.a.audio_id}",
        headers={"Authorization": f"Bearer {world.tokens['agent_a']}"},
    )
    assert own.status_code == 200
    assert own.content == wav_bytes()
    foreign = await client.get(
        f"/api/audio/{world.b.audio_id}",
        headers={"Authorization": f"Bearer {world.tokens['agent_a']}"},
    )
    assert foreign.status_code == 404
    upload = await client.post(
        "/api/uploads",
        content=wav_bytes(),
        headers={"Authorization": f"Bearer {world.tokens['agent_a']}", "Content-Type": "audio/wav"},
    )
    assert upload.status_code == 403


async def test_a_websocket_operation_after_deactivation_is_refused(gql, rt, world):
    from starlette.requests import HTTPConnection

    from schema.context import Context
    from schema.schema import build_schema

    scope = {
        "type": "websocket",
        "path": "/graphql",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {world.tokens['owner']}".encode())],
    }
    ctx = Context(rt=rt, request=HTTPConnection(scope), response=None, client="t")
    schema = build_schema()
    assert not (await schema.execute("{ me { email } }", context_value=ctx)).errors
    await gql.as_(world.tokens["platform"]).ok(
        "mutation($id: ID!) { deactivateUser(id: $id) { id } }", id=str(world.a.admin_user_id)
    )
    result = await schema.execute(
        'mutation { createGroup(name: "Danach") { id } }', context_value=ctx
    )
    assert [e.extensions["code"] for e in result.errors] == ["UNAUTHENTICATED"]
