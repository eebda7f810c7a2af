"""A command result the server cannot apply fails that command with its reason, and the
agent is answered: no result can keep the agent from the commands after it (issue 14,
point 1). PBX text in a directory is stored cleaned, never refused as a whole."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update

from api.models import Command, CommandStatus, PbxGroup, PbxUser
from api.services import agent_results, agents, mirror
from tests.test_agent_service import complete, create_group, world_directory

COMMAND = "query($id: ID!) { command(id: $id) { status error result } }"


async def _mirror(rt, tenant_id) -> dict[str, Any]:
    async with rt.db.reading() as s:
        users = {
            u.pbx_id: (u.name, u.extension, u.description)
            for u in await s.scalars(select(PbxUser).where(PbxUser.tenant_id == tenant_id))
        }
        groups = {
            g.pbx_id: (g.name, g.description)
            for g in await s.scalars(select(PbxGroup).where(PbxGroup.tenant_id == tenant_id))
        }
    return {"users": users, "groups": groups}


async def test_a_directory_with_unsafe_pbx_text_is_stored_cleaned(gql, rt, world):
    # What an older agent sends as the PBX has it: NUL, lone surrogate, escape, too long.
    directory = world_directory()
    directory["users"] += [
        {"id": "u7", "name": "Max\x00Muster", "extension": "207", "description": "a\ud800b"},
        {"id": "u8", "name": "L" * 300, "extension": "1" * 40, "description": "\x1b[31m"},
        {"id": "u9\x00", "name": "kaputte Id"},
        "kein Eintrag",
    ]
    directory["groups"].append(
        {"id": "g7", "name": "Alarm\x00", "description": "Zeile\r\nzwei", "memberIds": ["u7"]}
    )
    command_id = await create_group(gql, world.tokens["owner"])
    agent = await agents.agent_for_token(rt, world.tokens["agent_a"])
    done = await agents.complete(
        rt, agent, uuid.UUID(command_id), True, {"groupId": "g7", "directory": directory}, None
    )
    assert done.status is CommandStatus.SUCCEEDED
    stored = await _mirror(rt, world.a.tenant_id)
    assert stored["users"]["u7"] == ("Max\ufffdMuster", "207", "a\ufffdb")
    assert stored["users"]["u8"] == ("L" * 200, None, "\ufffd[31m")
    assert "u9\x00" not in stored["users"] and "u0" in stored["users"]
    assert stored["groups"]["g7"] == ("Alarm\ufffd", "Zeile  zwei")


async def test_a_result_that_cannot_be_applied_fails_its_command_and_answers_the_agent(
    gql, rt, world
):
    before = await _mirror(rt, world.a.tenant_id)
    command_id = await create_group(gql, world.tokens["owner"])
    done = await complete(
        gql, world.tokens["agent_a"], command_id, result={"directory": "kein Verzeichnis"}
    )
    assert done["status"] == "FAILED"
    shown = (await gql.as_(world.tokens["owner"]).ok(COMMAND, id=command_id))["command"]
    assert shown["status"] == "FAILED"
    assert shown["error"] == (
        "resultNotApplied: the central service could not store the agent's result "
        "(directory: not an object)"
    )
    assert shown["result"] == {"errorCode": "resultNotApplied"}
    assert await _mirror(rt, world.a.tenant_id) == before


async def test_a_database_refusal_rolls_back_the_whole_apply(gql, rt, world, monkeypatch):
    before = await _mirror(rt, world.a.tenant_id)
    real_replace = mirror.replace

    async def replace_then_refused(rt_, session, tenant_id, snapshot, as_of=None) -> bool:
        await real_replace(rt_, session, tenant_id, snapshot, as_of)  # the mirror changes...
        # ...then PostgreSQL refuses a text with NUL, as it did for a PBX description.
        await session.execute(
            update(PbxGroup).where(PbxGroup.tenant_id == tenant_id).values(description="a\x00b")
        )
        return True

    monkeypatch.setattr(mirror, "replace", replace_then_refused)
    command_id = await create_group(gql, world.tokens["owner"])
    directory = world_directory()
    directory["groups"].append({"id": "g9", "name": "Neu", "memberIds": []})
    done = await complete(gql, world.tokens["agent_a"], command_id, result={"directory": directory})
    assert done["status"] == "FAILED"
    async with rt.db.reading() as s:
        stored = await s.get(Command, uuid.UUID(command_id))
    assert stored.error == (
        "resultNotApplied: the central service could not store the agent's result "
        "(the database refused a value in it)"
    )
    assert await _mirror(rt, world.a.tenant_id) == before  # nothing of the apply stayed


async def test_a_late_result_of_an_expired_command_that_cannot_be_applied_is_answered(
    gql, rt, world, clock
):
    command_id = await create_group(gql, world.tokens["owner"])
    clock.advance(minutes=16)
    assert await agents.expire_overdue(rt) == 1
    done = await complete(
        gql, world.tokens["agent_a"], command_id, result={"directory": {"users": "kaputt"}}
    )
    assert done["status"] == "EXPIRED"
    shown = (await gql.as_(world.tokens["owner"]).ok(COMMAND, id=command_id))["command"]
    assert shown["error"].startswith("no agent completed this command in time")


async def test_an_agents_error_text_with_a_nul_is_stored_cleaned(gql, rt, world):
    command_id = await create_group(gql, world.tokens["owner"])
    agent = await agents.agent_for_token(rt, world.tokens["agent_a"])
    done = await agents.complete(
        rt, agent, uuid.UUID(command_id), False, {}, "The group 'A\x00' exists"
    )
    assert (done.status, done.error) == (CommandStatus.FAILED, "The group 'A\ufffd' exists")


async def test_any_exception_while_applying_fails_only_that_command(gql, rt, world, monkeypatch):
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("secret value from somewhere")

    monkeypatch.setattr(agent_results, "apply", broken)
    first = await create_group(gql, world.tokens["owner"])
    done = await complete(gql, world.tokens["agent_a"], first, result={})
    assert done["status"] == "FAILED"
    shown = (await gql.as_(world.tokens["owner"]).ok(COMMAND, id=first))["command"]
    assert shown["error"].endswith("(unexpected KeyError)")
    assert "secret" not in shown["error"]
    monkeypatch.undo()
    second = await create_group(gql, world.tokens["owner"])
    assert (await complete(gql, world.tokens["agent_a"], second, result={}))["status"] == (
        "SUCCEEDED"
    )
