"""No silent simulator: `agent run` without a chosen PBX adapter and dialer stops at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args

import pytest

from edge_agent import config
from edge_agent.errors import ConfigurationError
from edge_agent.settings import ADAPTER_CHOICES, AgentSettings, load_run_settings
from tests.processes import RUNDRUF, clean_env

AGENT = [sys.executable, "-m", "edge_agent"]

# Runs `rundruf-agent run` in a child with an audit hook (PEP 578) that records every file
# opened under the test's folder and every socket call, then prints them and the exit code.
AUDITED_RUN = """
import json, sys
root, events = sys.argv[1], []

def hook(event, args):
    if event == "open" and str(args[0]).startswith(root):
        events.append(["open", str(args[0])])
    elif event.startswith("socket."):
        events.append([event, repr(args)[:200]])

sys.addaudithook(hook)
from edge_agent.cli import main

code = main(["run"])
print(json.dumps({"code": code, "events": events}))
"""


def enrolled(tmp_path: Path) -> dict[str, str]:
    """An enrolled agent's environment whose server refuses connections: an agent that
    got past the check would read the file and try to connect."""
    path = tmp_path / "agent.json"
    config.save(path, config.Enrolment("http://127.0.0.1:9", "inst-1", "token-1"))
    return clean_env(
        RUNDRUF_AGENT_CONFIG_PATH=str(path),
        RUNDRUF_AGENT_STATE_DIR=str(tmp_path / "state"),
        RUNDRUF_AGENT_SIM_STATE=str(tmp_path / "swyx-sim.json"),
    )


def test_the_choices_named_in_the_message_are_the_settings_choices() -> None:
    for field, choices in ADAPTER_CHOICES.items():
        assert set(get_args(AgentSettings.model_fields[field].annotation)) == set(choices)
        assert AgentSettings.model_fields[field].is_required()


def test_it_names_both_settings_and_their_choices_when_neither_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RUNDRUF_AGENT_PBX", raising=False)
    monkeypatch.delenv("RUNDRUF_AGENT_DIALER", raising=False)

    with pytest.raises(ConfigurationError) as caught:
        load_run_settings()

    assert str(caught.value) == (
        "RUNDRUF_AGENT_PBX and RUNDRUF_AGENT_DIALER have no default and must both be set "
        "(RUNDRUF_AGENT_PBX is not set; RUNDRUF_AGENT_DIALER is not set):\n"
        "  RUNDRUF_AGENT_PBX=swyx: SwyxWare\n"
        "  RUNDRUF_AGENT_PBX=sim: the SwyxWare simulator, for the demo and tests only\n"
        "  RUNDRUF_AGENT_DIALER=sip: calls over SIP through the PBX\n"
        "  RUNDRUF_AGENT_DIALER=sim: simulated calls, for the demo and tests only"
    )


def test_it_names_both_settings_when_one_is_missing_and_the_other_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNDRUF_AGENT_PBX", "swxy")
    monkeypatch.delenv("RUNDRUF_AGENT_DIALER", raising=False)
    monkeypatch.setenv("RUNDRUF_AGENT_CHANNELS", "0")

    with pytest.raises(ConfigurationError) as caught:
        load_run_settings()

    message = str(caught.value)
    assert "(RUNDRUF_AGENT_PBX='swxy' is not a choice; RUNDRUF_AGENT_DIALER is not set)" in message
    assert "RUNDRUF_AGENT_PBX=swyx" in message and "RUNDRUF_AGENT_DIALER=sip" in message
    assert message.endswith(
        "invalid settings: RUNDRUF_AGENT_CHANNELS: Input should be greater than or equal to 1"
    )


def test_a_wrong_value_is_named_with_its_settings_choices_not_as_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNDRUF_AGENT_PBX", "swyx")
    monkeypatch.setenv("RUNDRUF_AGENT_DIALER", "SIP ")

    with pytest.raises(ConfigurationError) as caught:
        load_run_settings()

    assert str(caught.value) == (
        "RUNDRUF_AGENT_DIALER='SIP ' is not a choice; the choices are:\n"
        "  RUNDRUF_AGENT_DIALER=sip: calls over SIP through the PBX\n"
        "  RUNDRUF_AGENT_DIALER=sim: simulated calls, for the demo and tests only"
    )


def test_two_wrong_values_are_each_named_with_their_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNDRUF_AGENT_PBX", "swxy")
    monkeypatch.setenv("RUNDRUF_AGENT_DIALER", "sipp")

    with pytest.raises(ConfigurationError) as caught:
        load_run_settings()

    lines = str(caught.value).splitlines()
    assert lines[0] == "RUNDRUF_AGENT_PBX='swxy' is not a choice; the choices are:"
    assert lines[3] == "RUNDRUF_AGENT_DIALER='sipp' is not a choice; the choices are:"
    assert "no default" not in str(caught.value)


def test_it_reads_the_chosen_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNDRUF_AGENT_PBX", "swyx")
    monkeypatch.setenv("RUNDRUF_AGENT_DIALER", "sip")

    settings = load_run_settings()

    assert (settings.pbx, settings.dialer) == ("swyx", "sip")


@pytest.mark.parametrize(
    ("unset", "wrong", "said"),
    [
        (["RUNDRUF_AGENT_PBX", "RUNDRUF_AGENT_DIALER"], {}, "RUNDRUF_AGENT_PBX is not set"),
        (["RUNDRUF_AGENT_PBX"], {}, "RUNDRUF_AGENT_PBX is not set"),
        (["RUNDRUF_AGENT_DIALER"], {}, "RUNDRUF_AGENT_DIALER is not set"),
        ([], {"RUNDRUF_AGENT_DIALER": "SIP "}, "RUNDRUF_AGENT_DIALER='SIP ' is not a choice"),
    ],
)
def test_run_stops_at_once_without_reading_the_enrolment_or_touching_the_network(
    tmp_path: Path, unset: list[str], wrong: dict[str, str], said: str
) -> None:
    env = enrolled(tmp_path)
    env.update({"RUNDRUF_AGENT_PBX": "sim", "RUNDRUF_AGENT_DIALER": "sim", **wrong})
    for name in unset:
        del env[name]

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", AUDITED_RUN, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert time.monotonic() - started < 30
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"code": 2, "events": []}
    assert said in result.stderr
    # Both settings' choices when one is missing; a wrong value's setting's otherwise.
    assert ("RUNDRUF_AGENT_PBX=swyx: SwyxWare" in result.stderr) is not bool(wrong)
    assert "RUNDRUF_AGENT_DIALER=sip: calls over SIP through the PBX" in result.stderr
    assert result.stderr.rstrip().endswith("Nothing was started.")
    assert not (tmp_path / "state").exists() and not (tmp_path / "swyx-sim.json").exists()


@pytest.mark.parametrize("command", [[*AGENT, "run"], [*RUNDRUF, "agent", "run"]])
def test_both_commands_refuse_to_run_on_an_implicit_simulator(
    tmp_path: Path, command: list[str]
) -> None:
    result = subprocess.run(
        command, env=enrolled(tmp_path), capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "rundruf agent: RUNDRUF_AGENT_PBX and RUNDRUF_AGENT_DIALER have no default"
    )


def test_enrolment_needs_no_adapter_choice(tmp_path: Path) -> None:
    # The server refuses (nothing listens on port 9): enrol gets as far as the network.
    result = subprocess.run(
        [*AGENT, "enroll", "--server", "http://127.0.0.1:9", "--license", "K"],
        env=enrolled(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "enrolment failed" in result.stderr
    assert "RUNDRUF_AGENT_PBX" not in result.stderr
