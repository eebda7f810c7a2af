"""The trigger call's dialogue is defined once (edge_agent/ivr/definition.py): rundruf.lua,
run by the real Lua interpreter, has the same M.DEFAULTS, M.KEYS and M.PROMPTS; the SwyxWare
simulator's twin and make_prompts.py take theirs from it; the agent ships every prompt in each
language as a telephony master (issue 16, point 2).
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge_agent.dialer.common import open_master
from edge_agent.ivr import definition
from edge_agent.pbx import sim_callflow, sim_throttle
from edge_agent.pbx.sim_callflow import Prompt
from edge_agent.pbx.sim_throttle import ThrottleRules
from tests.callrouting.test_lua_flow import SCRIPT, lua
from tests.callrouting.test_make_prompts import make_prompts

__all__ = ["lua"]  # the fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
AGENT_PROMPTS = ROOT / "edge_agent" / "ivr" / "prompts"
TABLES = ("DEFAULTS", "KEYS", "PROMPTS")


def lua_tables(lua: str, script: Path = SCRIPT) -> dict[str, Any]:
    """M.DEFAULTS, M.KEYS and M.PROMPTS of `script`, as JSON from the script's own encoder."""
    names = ", ".join(f"{name} = M.{name}" for name in TABLES)
    code = f"local M = dofile({json.dumps(str(script))}); io.write(M.json_encode({{{names}}}))"
    proc = subprocess.run([lua, "-e", code], capture_output=True, text=True, timeout=20, check=True)
    tables: dict[str, Any] = json.loads(proc.stdout)
    return tables


def python_tables(
    defaults: dict[str, Any] = definition.DEFAULTS,
    keys: dict[str, str] = definition.KEYS,
    prompts: dict[str, str] = definition.PROMPTS,
) -> dict[str, Any]:
    """definition.py's tables as they look in JSON (tuples are lists)."""
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}
    return {"DEFAULTS": plain, "KEYS": dict(keys), "PROMPTS": dict(prompts)}


def differences(lua_side: dict[str, Any], python_side: dict[str, Any]) -> list[str]:
    """Every entry where the two differ (missing on one side, or another value or type)."""
    found = []
    for table in TABLES:
        ours, theirs = lua_side.get(table) or {}, python_side[table]
        for name in sorted(set(ours) | set(theirs)):
            a, b = ours.get(name), theirs.get(name)
            if a != b or (type(a) is not type(b) and not {type(a), type(b)} <= {int, float}):
                found.append(f"{table}.{name}: rundruf.lua {a!r}, definition.py {b!r}")
    return found


# ---------------------------------------------------------------------------- rundruf.lua


def test_the_script_has_the_definitions_tables(lua: str) -> None:
    assert differences(lua_tables(lua), python_tables()) == []


def test_the_comparison_fails_when_the_script_changes_alone(lua: str, tmp_path: Path) -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    changes = {
        "pin_tries = 3,": "pin_tries = 4,",
        "record_silence_seconds = 2,": "",
        '    record_again = "2",': '    record_again = "9",',
        'goodbye = "rundruf_auf_wiederhoeren.wav",': 'goodbye = "rundruf_tschuess.wav",',
    }
    for old, new in changes.items():
        assert text.count(old) == 1, old
        changed = tmp_path / "rundruf.lua"
        changed.write_text(text.replace(old, new), encoding="utf-8")

        assert differences(lua_tables(lua, changed), python_tables()), old


def test_the_comparison_fails_when_the_definition_changes_alone(lua: str) -> None:
    script = lua_tables(lua)
    d, k, p = definition.DEFAULTS, definition.KEYS, definition.PROMPTS

    assert differences(script, python_tables(defaults=d | {"digit_timeout": 12}))
    assert differences(script, python_tables(defaults=d | {"throttle_delays": (0, 2, 5)}))
    assert differences(script, python_tables(defaults=d | {"record_tone": 1}))
    assert differences(script, python_tables(keys=k | {"cancel": "0"}))
    assert differences(script, python_tables(prompts=p | {"menu": "rundruf_menu.wav"}))
    assert differences(script, python_tables(prompts={n: f for n, f in p.items() if n != "wait"}))


# ---------------------------------------------------------------------------- the simulator twin


def test_the_simulator_twin_takes_its_tries_timings_and_keys_from_the_definition() -> None:
    s = definition.setting
    twin = {
        "pin_tries": sim_callflow.PIN_TRIES,
        "pin_max_digits": sim_callflow.PIN_MAX_DIGITS,
        "menu_rounds": sim_callflow.MENU_ROUNDS,
        "record_max_seconds": sim_callflow.RECORD_MAX_SECONDS,
        "record_takes": sim_callflow.RECORD_TAKES,
        "post_window": sim_callflow.POST_WINDOW,
        "post_backoff_first": sim_callflow.POST_BACKOFF_FIRST,
        "post_backoff_max": sim_callflow.POST_BACKOFF_MAX,
    }
    assert twin == {name: s(name) for name in twin}
    pin_end = sim_callflow.PIN_END
    assert pin_end == definition.KEYS["pin_end"]
    assert ThrottleRules() == ThrottleRules(
        delays=tuple(definition.DEFAULTS["throttle_delays"]),  # type: ignore[arg-type]
        forget_s=s("throttle_forget"),
        notice_threshold=int(s("notice_threshold")),
        notice_window_s=s("notice_window"),
    )


def test_the_simulator_twin_plays_the_definitions_prompt_files() -> None:
    assert {member.name.lower(): member.value for member in Prompt} == definition.PROMPTS


@pytest.mark.parametrize("module", [sim_callflow, sim_throttle], ids=lambda m: m.__name__)
def test_the_simulator_twin_writes_no_value_of_its_own(module: Any) -> None:
    """Its constants are read from the definition: no number or key stands in their place."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "edge_agent.ivr.definition" in imported
    wav_literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ".wav" in node.value
    ]
    assert wav_literals == []


# ---------------------------------------------------------------------------- make_prompts.py


def test_make_prompts_speaks_the_definitions_texts_for_every_prompt() -> None:
    assert set(definition.TEXTS) == set(definition.PROMPTS.values())
    for lang in definition.LANGUAGES:
        assert make_prompts.texts(lang) == {
            file: definition.TEXTS[file][lang] for file in definition.PROMPTS.values()
        }


# ---------------------------------------------------------------------------- shipped prompts


@pytest.mark.parametrize("lang", definition.LANGUAGES)
def test_the_agent_ships_every_prompt_as_a_telephony_master(lang: str) -> None:
    folder = AGENT_PROMPTS / lang
    assert sorted(p.name for p in folder.glob("*.wav")) == sorted(definition.PROMPTS.values())
    for file in definition.PROMPTS.values():
        frames, _ = open_master(folder / file, read_frames=False)
        # Spoken words, trimmed: longer than a click, shorter than a stray minute of silence.
        assert 0.3 < frames / definition.SAMPLE_RATE < 20, file


def test_the_shipped_prompts_stay_small() -> None:
    total = sum(p.stat().st_size for p in AGENT_PROMPTS.glob("*/*.wav"))

    # Both languages; make_prompts.py trims the silence. 2.2 MB since the stop prompts (issue 17).
    assert total < 2_200_000
