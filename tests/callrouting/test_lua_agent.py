"""The call-routing script on SwyxWare: PIN, number and name from the agent file the Swyx
adapter writes, and the members' states in a test job (real Lua, stand-ins for SwyxWare).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.callrouting.test_lua_flow import (
    CONFIG,
    PIN,
    WIN_CONFIG,
    call,
    lua,
    run,
    swyx,
)

__all__ = ["lua"]  # the fixture, used by name

AGENT_ID = "31"
AGENT_NAME = "Rundruf Brandschutz"
AGENT_FILE = f"pin=482913\nnumber=7705\nname={AGENT_NAME.encode().hex()}\n"
FILE_CONFIG = CONFIG | {
    "pin": "__PIN__",
    "agent_number": "__AGENT_NUMBER__",
    "agent_user_id": AGENT_ID,
    "agent_dir": "C:\\ProgramData\\Rundruf\\agents",
}


def test_pin_and_number_come_from_the_agent_file(lua: str) -> None:
    (c,) = run(lua, call(["482913", "2", "1"], agentFile=AGENT_FILE), config=FILE_CONFIG)

    assert c.result == "triggered"
    (read,) = [e for e in c.events if e["type"] == "readFile"]
    assert read["path"] == "C:\\ProgramData\\Rundruf\\agents\\rundruf_agent_31.txt"
    (post,) = c.posts
    assert post["json"]["agentNumber"] == "7705"
    assert post["json"]["idempotencyKey"].startswith("7705-")


def test_the_pin_in_the_config_block_no_longer_counts(lua: str) -> None:
    (c,) = run(lua, call([PIN, PIN, PIN], agentFile=AGENT_FILE), config=FILE_CONFIG | {"pin": PIN})

    assert c.result == "pin_failed"
    assert c.posts == []


def test_a_missing_agent_file_never_triggers(lua: str) -> None:
    (c,) = run(lua, call(["482913", "2", "1"]), config=FILE_CONFIG)

    assert c.result == "misconfigured"
    assert c.posts == []
    assert any("cannot be read" in e.get("message", "") for e in c.events)


def test_an_agent_id_that_is_no_number_is_refused(lua: str) -> None:
    config = FILE_CONFIG | {"agent_user_id": "..\\..\\x"}

    (c,) = run(lua, call(["482913", "2", "1"], agentFile=AGENT_FILE), config=config)

    assert c.result == "misconfigured"
    assert not [e for e in c.events if e["type"] == "readFile"]


def test_a_short_pin_in_the_agent_file_is_refused(lua: str) -> None:
    short = AGENT_FILE.replace("pin=482913", "pin=12")

    (c,) = run(lua, call(["12", "2", "1"], agentFile=short), config=FILE_CONFIG)

    assert c.result == "misconfigured"


def test_a_test_job_carries_the_members_states(lua: str) -> None:
    states = {"17": 2, "18": 3}

    (c,) = run(
        lua,
        call(["482913", "1", "1"], agentFile=AGENT_FILE, memberStates=states),
        config=FILE_CONFIG,
    )

    (post,) = c.posts
    assert post["json"]["mode"] == 1
    assert post["json"]["memberStates"] == states
    (asked,) = [e for e in c.events if e["type"] == "states"]
    assert asked["group"] == "Brandschutz"


def test_alarms_do_not_wait_for_states(lua: str) -> None:
    (c,) = run(
        lua,
        call(["482913", "2", "1"], agentFile=AGENT_FILE, memberStates={"17": 2}),
        config=FILE_CONFIG,
    )

    assert c.posts[0]["json"]["memberStates"] is None
    assert not [e for e in c.events if e["type"] == "states"]


def test_a_failing_state_lookup_still_triggers_the_test(lua: str) -> None:
    (c,) = run(
        lua,
        call(["482913", "1", "1"], agentFile=AGENT_FILE, memberStates="error"),
        config=FILE_CONFIG,
    )

    assert c.result == "triggered"
    assert c.posts[0]["json"]["memberStates"] is None
    assert any("member states unavailable" in e.get("message", "") for e in c.events)


def test_without_an_agent_name_no_states_are_asked(lua: str) -> None:
    (c,) = run(lua, call([PIN, "1", "1"], memberStates={"17": 2}))

    assert c.posts[0]["json"]["memberStates"] is None


# --- through the SwyxWare adapter (PBXConfig and the file on disk) ----------------------


def swyx_config(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / f"rundruf_agent_{AGENT_ID}.txt").write_text(AGENT_FILE, encoding="ascii")
    return WIN_CONFIG | {
        "pin": "__PIN__",
        "agent_number": "__AGENT_NUMBER__",
        "agent_user_id": AGENT_ID,
        "agent_dir": str(tmp_path),
    }


def test_the_adapter_reads_the_agent_file_and_asks_pbxconfig(lua: str, tmp_path: Path) -> None:
    members = [{"UserID": 17, "State": 2}, {"UserID": 18, "State": 8}, {"UserID": 19, "State": 12}]

    c = swyx(lua, swyx_config(tmp_path), dtmf="482913#11", hangupWhenEmpty=True, members=members)

    assert c.result == "triggered"
    (asked,) = [e for e in c.events if e["type"] == "GetUserByAddress"]
    assert asked["address"] == "Brandschutz"
    (http,) = [e for e in c.events if e["type"] == "http"]
    body = json.loads(http["body"])
    assert (body["agentNumber"], body["memberStates"]) == ("7705", {"17": 2, "18": 8})


def test_the_adapter_takes_pbxuser_properties_as_methods_too(lua: str, tmp_path: Path) -> None:
    members = [{"UserID": 17, "State": 5}]

    c = swyx(
        lua,
        swyx_config(tmp_path),
        dtmf="482913#11",
        hangupWhenEmpty=True,
        members=members,
        membersAsMethods=True,
    )

    (http,) = [e for e in c.events if e["type"] == "http"]
    assert json.loads(http["body"])["memberStates"] == {"17": 5}


def test_without_pbxconfig_the_test_job_has_no_states(lua: str, tmp_path: Path) -> None:
    c = swyx(lua, swyx_config(tmp_path), dtmf="482913#11", hangupWhenEmpty=True)

    (http,) = [e for e in c.events if e["type"] == "http"]
    assert json.loads(http["body"])["memberStates"] is None


def test_the_agent_file_round_trips_from_the_adapters_format(lua: str) -> None:
    # The exact text the Swyx adapter's fake writes (tests/agent/swyx_fake.py) is read back.
    from tests.agent.swyx_fake import FakeSwyx

    fake = FakeSwyx(users=[{"UserID": "31", "Name": "Rundruf Ä&Ö", "InternalNumbers": ["7709"]}])
    fake._write_agent_file({"agentDir": "C:\\a"}, fake.users[0], "9999")
    (text,) = fake.files.values()

    (c,) = run(
        lua, call(["9999", "1", "1"], agentFile=text, memberStates={"1": 1}), config=FILE_CONFIG
    )

    assert c.posts[0]["json"]["agentNumber"] == "7709"
    (asked,) = [e for e in c.events if e["type"] == "states"]
    assert asked["group"] == "Ä&Ö"
