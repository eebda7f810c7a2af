"""The SwyxWare call-routing script (swyx_jobservice/callrouting/rundruf.lua), run by the real Lua
interpreter through tests/callrouting/harness.lua with stand-ins for the PBX functions.

Skips when no Lua interpreter is installed, and fails instead when RUNDRUF_REQUIRE_SERVICES=1
(as `make test` sets it; `make services` installs lua5.4). RUNDRUF_LUA=lua5.1 picks another
interpreter (SwyxWare's embedded Lua version is not documented; the script avoids 5.2+ syntax).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.pbx.sim_callflow import post_waits

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "swyx_jobservice" / "callrouting" / "rundruf.lua"
HARNESS = Path(__file__).with_name("harness.lua")
REQUIRE = os.environ.get("RUNDRUF_REQUIRE_SERVICES") == "1"
LUA_NAMES = (os.environ.get("RUNDRUF_LUA") or "lua5.4", "lua5.4", "lua5.3", "lua")

PIN = "4711"
AGENT = "7701"
TOKEN = "routing-token-abc"
JOBS = "http://127.0.0.1:8080/jobs"
NOTICES = "http://127.0.0.1:8080/notices"
CONFIG = {
    "agent_number": AGENT,
    "pin": PIN,
    "routing_token": TOKEN,
    "jobservice_url": "http://127.0.0.1:8080",
    "prompt_dir": "",
    "recording_dir": "/var/lib/rundruf/recordings",
}
START = 1_700_000_000
JOB_KEYS = {
    "agentNumber",
    "groupId",
    "mode",
    "callerNumber",
    "callerName",
    "idempotencyKey",
    "recording",
    "recordingPath",
    "memberStates",
}


@pytest.fixture(scope="module")
def lua() -> str:
    for name in LUA_NAMES:
        path = shutil.which(name)
        if path:
            return path
    if REQUIRE:
        pytest.fail(f"no Lua interpreter ({', '.join(LUA_NAMES)}) on PATH; run `make services`")
    pytest.skip(f"no Lua interpreter ({', '.join(LUA_NAMES)}) on PATH; `make services` installs it")


@dataclass
class Call:
    result: str
    events: list[dict[str, Any]]

    @property
    def prompts(self) -> list[str]:
        return [e["prompt"] for e in self.events if e["type"] == "play"]

    @property
    def sleeps(self) -> list[float]:
        return [e["seconds"] for e in self.events if e["type"] == "sleep"]

    @property
    def posts(self) -> list[dict[str, Any]]:
        """Every POST with its body parsed by Python's json (the reference for valid JSON)."""
        return [dict(e, json=json.loads(e["body"])) for e in self.events if e["type"] == "post"]

    def posts_to(self, url: str) -> list[dict[str, Any]]:
        return [p for p in self.posts if p["url"] == url]

    @property
    def hung_up(self) -> bool:
        return self.events[-1]["type"] == "hangup"


def harness(lua: str, scenario: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [lua, str(HARNESS), str(SCRIPT)],
        input=json.dumps(scenario),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run(lua: str, *calls: dict[str, Any], **extra: Any) -> list[Call]:
    scenario = {"config": extra.pop("config", CONFIG), "clock": START, "calls": list(calls)}
    scenario.update(extra)
    out = harness(lua, scenario)
    result = [Call(c["result"], c["events"]) for c in out["calls"]]
    for call in result:
        assert not call.result.startswith("error"), call.result
    return result


def call(digits: list[str | None], caller: str = "+4930111", **kw: Any) -> dict[str, Any]:
    return {
        "callerNumber": caller,
        "callerName": "Erika Muster",
        "callId": "c-1",
        "digits": digits,
    } | kw


# ---------------------------------------------------------------------------- triggering


def test_it_triggers_an_alarm_with_the_stored_message(lua: str) -> None:
    (c,) = run(lua, call([PIN, "2", "1"], caller="+4930123456", callId="call-42"))

    assert c.result == "triggered"
    (post,) = c.posts
    assert post["url"] == JOBS
    assert post["headers"] == {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
    }
    assert post["json"] == {
        "agentNumber": AGENT,
        "groupId": None,
        "mode": 2,
        "callerNumber": "+4930123456",
        "callerName": "Erika Muster",
        "idempotencyKey": f"{AGENT}-call-42-{START}",
        "recording": None,
        "recordingPath": None,
        "memberStates": None,
    }
    assert c.prompts == [
        "rundruf_pin.wav",
        "rundruf_menue.wav",
        "rundruf_bestaetigen_alarm.wav",
        "rundruf_ausgeloest.wav",
    ]
    assert c.sleeps == []
    assert c.hung_up


def test_it_reads_the_pin_up_to_the_hash_key(lua: str) -> None:
    (c,) = run(lua, call([PIN, "2", "1"]))

    pin_read = next(e for e in c.events if e["type"] == "read")
    assert pin_read["terminator"] == "#"
    assert pin_read["max"] >= len(PIN)


def test_it_starts_a_test_with_key_1(lua: str) -> None:
    (c,) = run(lua, call([PIN, "1", "1"]))

    (post,) = c.posts
    assert post["json"]["mode"] == 1
    assert "rundruf_bestaetigen_test.wav" in c.prompts
    assert c.prompts[-1] == "rundruf_ausgeloest.wav"


def test_it_sends_a_message_recorded_now(lua: str) -> None:
    (c,) = run(lua, call([PIN, "3", "1"], callId="c-9"))

    (record,) = [e for e in c.events if e["type"] == "record"]
    assert record["maxSeconds"] == 60
    assert record["terminator"] == "#"
    assert record["silenceSeconds"] == 2
    assert record["path"].startswith(CONFIG["recording_dir"] + "/")
    assert record["path"].endswith(".wav")
    (post,) = c.posts
    assert post["json"]["mode"] == 3
    assert post["json"]["recordingPath"] == record["path"]
    assert post["json"]["recording"] is None
    # "1 to send" after the recording is the confirmation; no second question.
    assert c.prompts == [
        "rundruf_pin.wav",
        "rundruf_menue.wav",
        "rundruf_aufnahme.wav",
        "rundruf_aufnahme_pruefen.wav",
        "rundruf_ausgeloest.wav",
    ]


def test_the_caller_hears_the_recording_before_sending_it(lua: str) -> None:
    (c,) = run(lua, call([PIN, "3", "1"]))

    steps = [
        (e["type"], e.get("prompt") or e.get("path"))
        for e in c.events
        if e["type"] in ("record", "playback", "play")
    ]
    record = next(e for e in c.events if e["type"] == "record")
    assert steps[2:6] == [
        ("play", "rundruf_aufnahme.wav"),
        ("record", record["path"]),
        ("playback", record["path"]),
        ("play", "rundruf_aufnahme_pruefen.wav"),
    ]


def test_each_take_is_played_back(lua: str) -> None:
    (c,) = run(lua, call([PIN, "3", "2", "1"]))

    records = [e["path"] for e in c.events if e["type"] == "record"]
    assert [e["path"] for e in c.events if e["type"] == "playback"] == records


def test_a_failed_recording_is_not_played_back(lua: str) -> None:
    (c,) = run(lua, call([PIN, "3", "1"], recordings=[False, True]))

    records = [e["path"] for e in c.events if e["type"] == "record"]
    assert [e["path"] for e in c.events if e["type"] == "playback"] == records[1:]


def test_a_playback_that_fails_does_not_cost_the_alarm(lua: str) -> None:
    (c,) = run(lua, call([PIN, "3", "1"], playbackFails=True))

    assert c.result == "triggered"
    assert c.posts[0]["json"]["mode"] == 3
    assert any("playback failed" in e["message"] for e in c.events if e["type"] == "trace")


def test_the_flow_reads_its_keys_from_m_keys(lua: str) -> None:
    keys = {
        "pin_end": "*",
        "test": "4",
        "alarm": "5",
        "alarm_recorded": "6",
        "cancel": "0",
        "confirm": "7",
        "record_end": "*",
        "record_send": "8",
        "record_again": "9",
    }
    test, alarm, recorded, cancelled = run(
        lua,
        call([PIN, "4", "1", "4", "7"]),  # "1" no longer confirms: back to the menu
        call([PIN, "5", "7"]),
        call([PIN, "6", "9", "8"]),
        call([PIN, "0"]),
        keys=keys,
    )

    assert [p["json"]["mode"] for p in test.posts] == [1]
    assert test.prompts.count("rundruf_bestaetigen_test.wav") == 2
    assert [p["json"]["mode"] for p in alarm.posts] == [2]
    assert [p["json"]["mode"] for p in recorded.posts] == [3]
    records = [e for e in recorded.events if e["type"] == "record"]
    assert len(records) == 2
    assert {r["terminator"] for r in records} == {"*"}
    pin_read = next(e for e in test.events if e["type"] == "read")
    assert pin_read["terminator"] == "*"
    assert cancelled.result == "cancelled"


def test_key_2_after_a_recording_records_again(lua: str) -> None:
    (c,) = run(lua, call([PIN, "3", "2", "1"]))

    records = [e for e in c.events if e["type"] == "record"]
    assert len(records) == 2
    assert records[0]["path"] != records[1]["path"]
    assert c.posts[0]["json"]["recordingPath"] == records[1]["path"]


def test_a_failed_recording_is_said_and_tried_again(lua: str) -> None:
    (c,) = run(lua, call([PIN, "3", "1"], recordings=[False, True]))

    assert "rundruf_aufnahme_fehler.wav" in c.prompts
    assert c.posts[0]["json"]["mode"] == 3


def test_it_uses_windows_paths_for_recordings_on_windows(lua: str) -> None:
    config = CONFIG | {"recording_dir": "C:\\ProgramData\\Rundruf\\recordings\\"}
    (c,) = run(lua, call([PIN, "3", "1"], callId="{a/b}"), config=config)

    path = c.posts[0]["json"]["recordingPath"]
    assert path.startswith("C:\\ProgramData\\Rundruf\\recordings\\rundruf_7701_")
    assert "/" not in path[2:]
    assert "\\\\" not in path


# ---------------------------------------------------------------------------- menu


def test_an_invalid_menu_key_prompts_again(lua: str) -> None:
    (c,) = run(lua, call([PIN, "7", "2", "1"]))

    assert c.prompts[:4] == [
        "rundruf_pin.wav",
        "rundruf_menue.wav",
        "rundruf_ungueltig.wav",
        "rundruf_menue.wav",
    ]
    assert c.posts[0]["json"]["mode"] == 2


def test_any_other_key_at_the_confirmation_goes_back_to_the_menu(lua: str) -> None:
    (c,) = run(lua, call([PIN, "2", "9", "1", "1"]))

    assert c.prompts.count("rundruf_menue.wav") == 2
    (post,) = c.posts
    assert post["json"]["mode"] == 1


def test_star_in_the_menu_ends_the_call_without_an_alarm(lua: str) -> None:
    (c,) = run(lua, call([PIN, "*"]))

    assert c.result == "cancelled"
    assert c.posts == []
    assert c.prompts[-1] == "rundruf_abgebrochen.wav"
    assert c.hung_up


def test_a_caller_hanging_up_in_the_menu_triggers_nothing(lua: str) -> None:
    (c,) = run(lua, call([PIN, "2"]))

    assert c.result == "hangup"
    assert c.posts == []


def test_silence_in_the_menu_gives_up_after_some_rounds(lua: str) -> None:
    (c,) = run(lua, call([PIN, None, None, None, None, None, "2", "1"]))

    assert c.result == "menu_exhausted"
    assert c.posts == []
    assert c.prompts[-1] == "rundruf_auf_wiederhoeren.wav"


# ---------------------------------------------------------------------------- PIN


def test_it_hangs_up_after_three_wrong_pins(lua: str) -> None:
    (c,) = run(lua, call(["1111", "2222", "3333", PIN, "2", "1"]))

    assert c.result == "pin_failed"
    assert c.posts == []
    assert c.prompts.count("rundruf_pin_falsch.wav") == 3
    assert c.prompts[-1] == "rundruf_auf_wiederhoeren.wav"
    assert c.hung_up


def test_a_correct_pin_on_the_third_try_is_accepted(lua: str) -> None:
    (c,) = run(lua, call(["1111", "2222", PIN, "2", "1"]))

    assert c.result == "triggered"
    assert len(c.posts) == 1


def test_an_empty_entry_uses_a_try_but_is_no_wrong_pin(lua: str) -> None:
    (c,) = run(lua, call([None, "", PIN, "2", "1"]))

    assert c.prompts.count("rundruf_ungueltig.wav") == 2
    assert c.sleeps == []
    assert c.result == "triggered"


def test_a_caller_with_earlier_wrong_pins_waits_longer_each_time(lua: str) -> None:
    attacker = "+4917000666"
    first, second = run(
        lua,
        call(["1111", "2222", "3333"], caller=attacker),
        call(["4444", "5555", "6666"], caller=attacker),
    )

    assert first.sleeps == [2, 5]
    assert second.sleeps == [10, 20, 30]
    assert "rundruf_bitte_warten.wav" in second.prompts[:1]


def test_the_delay_is_capped_so_the_right_pin_still_gets_through(lua: str) -> None:
    attacker = "+4917000666"
    calls = run(
        lua,
        *[call(["1111", "2222", "3333"], caller=attacker) for _ in range(3)],
        call([PIN, "2", "1"], caller=attacker),
    )

    assert max(s for c in calls for s in c.sleeps) == 60
    assert calls[-1].result == "triggered"


def test_a_correct_pin_from_another_caller_triggers_at_once(lua: str) -> None:
    calls = run(
        lua,
        *[call(["1111", "2222", "3333"], caller="+4917000666") for _ in range(4)],
        call([PIN, "2", "1"], caller="+4930222"),
    )

    assert calls[0].sleeps  # the guesser is slowed down ...
    rescuer = calls[-1]
    assert rescuer.sleeps == []  # ... the next caller is not
    assert "rundruf_bitte_warten.wav" not in rescuer.prompts
    assert rescuer.result == "triggered"
    assert len(rescuer.posts_to(JOBS)) == 1


def test_wrong_pins_long_ago_are_forgotten(lua: str) -> None:
    _, later = run(
        lua,
        call(["1111", "2222", "3333"]),
        call(["4444", PIN, "2", "1"], after=2 * 3600),
    )

    assert later.sleeps == [2]
    assert later.result == "triggered"


def test_a_correct_pin_clears_the_callers_count(lua: str) -> None:
    calls = run(
        lua,
        call(["1111", "2222", PIN, "1", "1"]),
        call(["3333", PIN, "1", "1"]),
    )

    assert calls[1].sleeps == [2]


# ---------------------------------------------------------------------------- wrong-PIN notice


def test_ten_wrong_pins_in_ten_minutes_send_one_notice(lua: str) -> None:
    callers = ["+49301", "+49302", "+49303", "+49304"]
    calls = run(lua, *[call(["1", "2", "3"], caller=n, after=30) for n in callers])

    notices = [p for c in calls for p in c.posts_to(NOTICES)]
    assert len(notices) == 1
    (notice,) = notices
    assert notice["json"] == {
        "kind": "wrongPins",
        "agentNumber": AGENT,
        "callerNumber": "+49304",  # whose wrong PIN was the tenth
        "count": 10,
    }
    assert notice["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert [p for c in calls for p in c.posts_to(JOBS)] == []


def test_the_notice_never_locks_the_group(lua: str) -> None:
    guessers = [call(["1", "2", "3"], caller=f"+4930{i}") for i in range(5)]
    *_, rescuer = run(lua, *guessers, call([PIN, "2", "1"], caller="+4930999"))

    assert rescuer.sleeps == []
    assert rescuer.result == "triggered"


def test_wrong_pins_spread_over_more_than_ten_minutes_send_no_notice(lua: str) -> None:
    calls = run(lua, *[call(["1"], caller=f"+4930{i}", after=120) for i in range(12)])

    assert [p for c in calls for p in c.posts_to(NOTICES)] == []


def test_a_failed_notice_is_sent_with_the_next_wrong_pin(lua: str) -> None:
    guessers = [call(["1", "2", "3"], caller=f"+4930{i}") for i in range(3)]
    *_, tenth, eleventh = run(
        lua,
        *guessers,
        call(["4"], caller="+49309", http=[{"status": 503}]),
        call(["5"], caller="+49308"),
    )

    assert len(tenth.posts_to(NOTICES)) == 1
    (notice,) = eleventh.posts_to(NOTICES)
    assert notice["json"]["count"] == 11


# ---------------------------------------------------------------------------- job service


WAITS = [0.5, 1, 2, 4, 4, 4]  # 15.5 s: longer than the service wrapper's 5 s restart


def test_it_retries_a_failing_job_service_for_15_seconds_with_the_same_key(lua: str) -> None:
    failing = [{"status": 500}, {"status": None}, {"status": 503}] + [{"status": None}] * 4
    (c,) = run(lua, call([PIN, "2", "1"], http=failing))

    posts = c.posts_to(JOBS)
    assert len(posts) == 7
    assert len({p["json"]["idempotencyKey"] for p in posts}) == 1
    assert len({p["body"] for p in posts}) == 1
    assert c.sleeps == WAITS
    assert c.result == "post_failed"
    assert c.prompts.count("rundruf_bitte_warten.wav") == 1
    assert c.prompts[-1] == "rundruf_fehler.wav"
    assert "rundruf_ausgeloest.wav" not in c.prompts
    assert c.hung_up


def test_a_job_service_down_for_8_seconds_still_gets_the_job(lua: str) -> None:
    (c,) = run(lua, call([PIN, "2", "1"], downFor=8))

    statuses = [p["status"] for p in c.posts_to(JOBS)]
    assert statuses == [None] * 5 + [201]  # at 0, 0.5, 1.5, 3.5, 7.5 s down; at 11.5 s up
    assert c.sleeps == WAITS[:5]
    assert c.result == "triggered"
    # The caller heard "please wait" once, right after the first failure, then "triggered".
    menu_done = c.prompts.index("rundruf_bestaetigen_alarm.wav")
    assert c.prompts[menu_done + 1 :] == ["rundruf_bitte_warten.wav", "rundruf_ausgeloest.wav"]


def test_a_job_service_down_longer_than_the_window_fails_the_call(lua: str) -> None:
    (c,) = run(lua, call([PIN, "2", "1"], downFor=20))

    assert len(c.posts_to(JOBS)) == 7
    assert sum(c.sleeps) == 15.5
    assert c.result == "post_failed"
    assert c.prompts[-2:] == ["rundruf_bitte_warten.wav", "rundruf_fehler.wav"]


def test_it_says_triggered_when_a_retry_gets_through(lua: str) -> None:
    answers = [{"status": None}, {"status": 200, "body": '{"id":"j-7"}'}]
    (c,) = run(lua, call([PIN, "2", "1"], http=answers))

    assert len(c.posts_to(JOBS)) == 2
    assert c.result == "triggered"
    assert c.prompts[-1] == "rundruf_ausgeloest.wav"


def test_it_does_not_retry_a_rejected_token(lua: str) -> None:
    (c,) = run(lua, call([PIN, "2", "1"], http=[{"status": 401}]))

    assert len(c.posts_to(JOBS)) == 1
    assert c.prompts[-1] == "rundruf_fehler.wav"


@pytest.mark.parametrize("call_id", ["{8F3A-11}/x y\u00e4\n", "x" * 300, ""])
def test_the_idempotency_key_fits_the_job_services_alphabet(lua: str, call_id: str) -> None:
    (c,) = run(lua, call([PIN, "2", "1"], callId=call_id))

    key = c.posts[0]["json"]["idempotencyKey"]
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", key), key
    assert key.startswith(f"{AGENT}-")
    assert key.endswith(f"-{START}")


def test_two_calls_get_different_idempotency_keys(lua: str) -> None:
    a, b = run(
        lua,
        call([PIN, "2", "1"], callId="c-1"),
        call([PIN, "2", "1"], callId="c-2", after=1),
    )

    assert a.posts[0]["json"]["idempotencyKey"] != b.posts[0]["json"]["idempotencyKey"]


# ---------------------------------------------------------------------------- JSON


def test_a_hostile_caller_name_is_escaped(lua: str) -> None:
    name = 'O\'Brien "Bob" \\ test\n\t\x01\x1f\x7f </script> Jürgen €  \U0001f6a8'
    (c,) = run(lua, call([PIN, "2", "1"], callerName=name, caller='+49"30\\'))

    body = c.posts[0]["json"]
    assert body["callerName"] == name
    assert body["callerNumber"] == '+49"30\\'
    assert set(body) == JOB_KEYS


def test_a_caller_name_in_a_windows_code_page_still_gives_valid_json(lua: str) -> None:
    latin1 = "Müller-Lüdenscheidt".encode("latin-1").hex()
    (c,) = run(lua, call([PIN, "2", "1"], callerNameHex=latin1))

    assert c.posts[0]["json"]["callerName"] == "Müller-Lüdenscheidt"


def test_a_caller_name_in_windows_1252_reaches_the_job_service_without_control_characters(
    lua: str,
) -> None:
    name = "Café „Zum Löwen“ €"
    (c,) = run(lua, call([PIN, "2", "1"], callerNameHex=name.encode("cp1252").hex()))

    assert c.posts[0]["json"]["callerName"] == name


def test_no_caller_name_is_sent_as_null(lua: str) -> None:
    (c,) = run(lua, call([PIN, "2", "1"], callerName=None))

    assert c.posts[0]["json"]["callerName"] is None


def test_the_encoder_round_trips_through_python_json(lua: str) -> None:
    samples = [
        b"",
        bytes(range(0x20)) + b"\x7f",
        b'"\\/',
        "äöü ß € 😀 \u2028".encode(),
        b"\xc3\x28 \xe2\x82 \xed\xa0\x80 \xf5",  # broken UTF-8, surrogates, too-large lead byte
    ]
    out = harness(lua, {"encodeHex": [s.hex() for s in samples]})

    decoded = [json.loads(e) for e in out["encoded"]]
    assert decoded[:4] == [s.decode() for s in samples[:4]]
    # Windows-1252, not Latin-1: no C1 control character, which the job service refuses.
    assert decoded[4] == samples[4].decode("cp1252", errors="replace")
    assert not any(0x80 <= ord(ch) <= 0x9F for ch in decoded[4])


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pin", ""),
        ("pin", "__PIN__"),
        ("pin", "12"),
        ("routing_token", "__ROUTING_TOKEN__"),
        ("routing_token", "abc\r\nX-Evil: 1"),
        ("agent_number", ""),
        ("recording_dir", "recordings"),
    ],
)
def test_an_unconfigured_script_never_triggers(lua: str, field: str, value: str) -> None:
    (c,) = run(lua, call(["", "__PIN__", "12", "2", "1"]), config=CONFIG | {field: value})

    assert c.result == "misconfigured"
    assert c.posts == []
    assert c.prompts == ["rundruf_fehler.wav"]


def test_the_shipped_script_refuses_until_its_config_is_filled_in_by_hand() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    block = text[text.index("-- BEGIN RUNDRUF CONFIG") : text.index("-- END RUNDRUF CONFIG")]

    for name in ("__AGENT_NUMBER__", "__PIN__", "__ROUTING_TOKEN__"):
        assert f'"{name}"' in block
    # Nothing writes this block: the agent writes only the agent file (docs/swyx.md).
    first_line = block.splitlines()[0]
    assert "filled in by hand" in first_line
    assert "the agent does not write it" in first_line
    readme = (SCRIPT.parent / "README.md").read_text(encoding="utf-8")
    assert "**It is filled in by hand**" in readme
    assert "never writes the script" in readme


def test_the_file_store_keeps_wrong_pins_across_processes(lua: str, tmp_path: Path) -> None:
    caller = "+49 (30) 123/456"
    first = run(lua, call(["1", "2", "3"], caller=caller), stateDir=str(tmp_path))
    # A new process, a new clock: it goes on from where the first call's sleeps left it.
    second = run(lua, call(["4"], caller=caller), stateDir=str(tmp_path), clock=START + 7)

    assert first[0].sleeps == [2, 5]
    assert second[0].sleeps == [10, 20]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names and all(n.startswith("rundruf_") and n.endswith(".txt") for n in names)
    assert all(set(n[len("rundruf_") : -len(".txt")]) <= set("0123456789abcdef") for n in names)


# ---------------------------------------------------------------------------- SwyxWare adapter
# Fake PBXCall / PBXScript / PBXWebRequest with the names the adapter uses: this checks the
# adapter's own logic (polling, time-outs, hang-up, headers), not that SwyxWare has those names.

WIN_CONFIG = CONFIG | {
    "prompt_dir": "C:\\Rundruf\\prompts",
    "recording_dir": "C:\\Rundruf\\recordings",
}


def swyx(lua: str, config: dict[str, Any] = WIN_CONFIG, **spec: Any) -> Call:
    spec = {"callerNumber": "+4930111", "callerName": "Erika", "callId": "c-5"} | spec
    out = harness(lua, {"config": config, "swyx": spec})
    return Call(out["result"], out["events"])


def test_the_adapter_carries_a_whole_call(lua: str) -> None:
    c = swyx(lua, dtmf=f"{PIN}#21", hangupWhenEmpty=True)

    assert c.result == "triggered"
    (http,) = [e for e in c.events if e["type"] == "http"]
    assert http["verb"] == "POST"
    assert http["url"] == JOBS
    assert f"Authorization: Bearer {TOKEN}" in http["headers"]
    assert "Content-Type: application/json" in http["headers"]
    assert json.loads(http["body"])["mode"] == 2
    plays = [e["path"] for e in c.events if e["type"] == "PlayMessage"]
    assert plays[0] == "C:\\Rundruf\\prompts\\rundruf_pin.wav"
    assert plays[-1].endswith("\\rundruf_ausgeloest.wav")
    assert c.events[-1]["type"] == "Disconnect"


def test_the_adapter_records_a_message(lua: str) -> None:
    c = swyx(lua, dtmf=f"{PIN}#31", hangupWhenEmpty=True)

    (rec,) = [e for e in c.events if e["type"] == "RecordMessage"]
    assert rec["seconds"] == 60
    assert rec["path"].startswith("C:\\Rundruf\\recordings\\rundruf_7701_c-5_")
    (http,) = [e for e in c.events if e["type"] == "http"]
    assert json.loads(http["body"])["recordingPath"] == rec["path"]
    # Played back by its own path (not looked up in prompt_dir), before the question.
    plays = [e["path"] for e in c.events if e["type"] == "PlayMessage"]
    at = plays.index(rec["path"])
    assert plays[at - 1].endswith("\\rundruf_aufnahme.wav")
    assert plays[at + 1].endswith("\\rundruf_aufnahme_pruefen.wav")


def test_the_adapter_passes_the_silence_that_ends_a_recording(lua: str) -> None:
    default = swyx(lua, dtmf=f"{PIN}#31", hangupWhenEmpty=True)
    off = swyx(
        lua, WIN_CONFIG | {"record_silence_seconds": 0}, dtmf=f"{PIN}#31", hangupWhenEmpty=True
    )

    (rec,) = [e for e in default.events if e["type"] == "RecordMessage"]
    assert rec["silence"] == 2
    (rec,) = [e for e in off.events if e["type"] == "RecordMessage"]
    assert rec["silence"] is None  # only path and limit: a two-argument RecordMessage works


def test_the_adapter_ends_pin_entry_after_ten_quiet_seconds(lua: str) -> None:
    c = swyx(lua, dtmf="")

    assert c.result == "pin_failed"
    assert sum(e["ms"] for e in c.events if e["type"] == "Sleep") == 3 * 10_000
    assert not [e for e in c.events if e["type"] == "http"]


def test_the_adapter_notices_a_caller_who_hangs_up(lua: str) -> None:
    c = swyx(lua, dtmf="47", hangupWhenEmpty=True)

    assert c.result == "pin_hangup"
    assert not [e for e in c.events if e["type"] == "http"]


def test_a_missing_caller_number_function_does_not_stop_an_alarm(lua: str) -> None:
    c = swyx(lua, dtmf=f"{PIN}#21", hangupWhenEmpty=True, missing=["CallingPartyNumber"])

    assert c.result == "triggered"
    (http,) = [e for e in c.events if e["type"] == "http"]
    assert json.loads(http["body"])["callerNumber"] == ""
    assert any("CallingPartyNumber" in e["message"] for e in c.events if e["type"] == "Trace")


def test_the_entry_point_refuses_the_shipped_placeholders(lua: str) -> None:
    c = swyx(lua, dtmf="__PIN__#21", entryPoint=True)

    assert [e["type"] for e in c.events if e["type"] != "Trace"] == ["PlayMessage", "Disconnect"]
    assert c.events[-2]["path"].endswith("rundruf_fehler.wav")
    traces = " ".join(e["message"] for e in c.events if e["type"] == "Trace")
    assert "not configured" in traces
    assert "__PIN__" not in traces


def test_the_simulator_twin_retries_the_job_post_as_the_script_does(lua: str) -> None:
    code = (
        f"local M = dofile({json.dumps(str(SCRIPT))}); local d = M.DEFAULTS; "
        "io.write(M.json_encode(M.post_waits(d.post_backoff_first, d.post_backoff_max, "
        "d.post_window)))"
    )
    proc = subprocess.run([lua, "-e", code], capture_output=True, text=True, timeout=20, check=True)

    assert json.loads(proc.stdout) == list(post_waits()) == WAITS
