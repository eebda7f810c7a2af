"""The agent's command handlers against the simulator, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cache import LocalCache
from edge_agent.commands import ADMIN_GROUP, SERVICE_USER, Commands
from edge_agent.pbx.sim import SimControl, SimPbx
from edge_agent.pbx.sim_state import SimState


class NoServer:
    async def download_audio(self, audio_id: str, sha256: str) -> bytes:
        raise AssertionError("no download expected")


@pytest.fixture
def commands(tmp_path: Path) -> Commands:
    control = SimControl(tmp_path / "sim.json")
    control.create(admin_password="pw")
    control.seed_demo(n_members=4)
    return Commands(SimPbx(tmp_path / "sim.json"), LocalCache(tmp_path / "state"), NoServer())  # type: ignore[arg-type]


VERIFY = {"host": "swyx.local", "adminUser": "admin"}


async def test_an_unknown_command_fails_with_a_clear_reason(commands):
    outcome = await commands.run("rebootPbx", {}, {})
    assert not outcome.ok
    assert "does not know the command 'rebootPbx'" in outcome.error


async def test_a_malformed_command_fails_without_touching_the_pbx(commands):
    outcome = await commands.run("createGroup", {}, {})
    assert not outcome.ok
    assert "malformed createGroup" in outcome.error


async def test_verifying_twice_creates_the_service_user_and_group_once(commands):
    for _ in range(2):
        outcome = await commands.run("verifyPbxCredentials", VERIFY, {"adminPassword": "pw"})
        assert outcome.ok, outcome.error
    users = [u for u in outcome.result["directory"]["users"] if u["name"] == SERVICE_USER]
    groups = [g for g in outcome.result["directory"]["groups"] if g["name"] == ADMIN_GROUP]
    assert len(users) == 1 and len(groups) == 1
    assert groups[0]["memberIds"] == [users[0]["id"]]


async def test_commands_after_a_restart_sign_in_again_with_the_stored_login(commands, tmp_path):
    await commands.run("verifyPbxCredentials", VERIFY, {"adminPassword": "pw"})
    restarted = Commands(SimPbx(tmp_path / "sim.json"), LocalCache(tmp_path / "state"), NoServer())  # type: ignore[arg-type]
    outcome = await restarted.run("syncDirectory", {}, {})
    assert outcome.ok, outcome.error


async def test_enabling_twice_keeps_one_agent_user(commands):
    await commands.run("verifyPbxCredentials", VERIFY, {"adminPassword": "pw"})
    directory = (await commands.run("syncDirectory", {}, {})).result["directory"]
    group = next(g for g in directory["groups"] if g["name"] == "Brandschutzhelfer")
    payload = {
        "groupPbxId": group["id"],
        "groupName": group["name"],
        "agentName": "Rundruf Brandschutzhelfer",
    }
    first = await commands.run("enableBroadcast", payload, {"pin": "1234"})
    second = await commands.run("enableBroadcast", payload, {"pin": "1234"})
    assert first.ok and second.ok
    assert first.result["agentUserId"] == second.result["agentUserId"]
    agents = [
        u for u in second.result["directory"]["users"] if u["name"] == "Rundruf Brandschutzhelfer"
    ]
    assert len(agents) == 1 and agents[0]["callroutingOnly"]


async def test_enabling_twice_with_a_long_group_name_keeps_one_agent_user(commands, tmp_path):
    # "Rundruf " and a 195-character name are 203 characters; the directory cuts names
    # to 200, so the agent must cut the name it creates and looks for alike (review 7).
    await commands.run("verifyPbxCredentials", VERIFY, {"adminPassword": "pw"})
    control = SimControl(tmp_path / "sim.json")
    name = "G" * 195
    group_id = control.add_group(name, [control.add_user("Erika", "291")])
    payload = {"groupPbxId": group_id, "groupName": name, "agentName": f"Rundruf {name}"}
    first = await commands.run("enableBroadcast", payload, {"pin": "1234"})
    second = await commands.run("enableBroadcast", payload, {"pin": "1234"})
    assert first.ok and second.ok, (first.error, second.error)
    assert first.result["agentUserId"] == second.result["agentUserId"]
    agents = [u for u in control.snapshot().users if u.name.startswith("Rundruf G")]
    assert len(agents) == 1 and len(agents[0].name) == 200


async def test_a_value_error_deeper_in_the_agent_is_no_malformed_command(commands, monkeypatch):
    # A ValueError from the adapter or a file (not from reading the payload) is the
    # agent's trouble: said so, with the directory, never "malformed command".
    await commands.run("verifyPbxCredentials", VERIFY, {"adminPassword": "pw"})

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("the state file is not what it was")

    monkeypatch.setattr(SimState, "add_group", broken)  # raised inside the adapter
    outcome = await commands.run("createGroup", {"name": "Neu"}, {})
    assert not outcome.ok
    assert outcome.error.startswith("the agent failed running createGroup: ValueError")
    assert "directory" in outcome.result
