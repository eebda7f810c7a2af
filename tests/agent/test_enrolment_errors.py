"""An agent without a usable enrolment stops with its own exit code (edge_agent/exit_codes.py)
and a message naming the command that enrols it; the Windows service host then stops the
service instead of restarting it (tests/agent/test_windows_ops.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent import config, exit_codes
from edge_agent.errors import NotEnrolled
from tests.processes import clean_env

BROKEN = {
    "missing": None,
    "not JSON": b'{"server": "https://rundruf.example", "tok',
    "not UTF-8": b"\xff\xfe{}",
    "a list": b"[]",
    "no token": b'{"server": "https://rundruf.example", "installationId": "i-1"}',
    "an empty token": b'{"server": "https://x", "installationId": "i-1", "token": ""}',
    "a number for the server": b'{"server": 1, "installationId": "i-1", "token": "t"}',
}


def write(path: Path, content: bytes | None) -> None:
    if content is not None:
        path.write_bytes(content)


@pytest.mark.parametrize("case", BROKEN)
def test_it_raises_not_enrolled_for_a_missing_or_broken_enrolment(
    tmp_path: Path, case: str
) -> None:
    path = tmp_path / "agent.json"
    write(path, BROKEN[case])

    with pytest.raises(NotEnrolled) as caught:
        config.load(path)

    assert str(path) in str(caught.value)
    assert "enrol with `rundruf-service agent enroll --server URL --license KEY`" in str(
        caught.value
    )


def test_it_reads_a_whole_enrolment(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    config.save(path, config.Enrolment("https://rundruf.example", "i-1", "t-1"))

    assert config.load(path) == config.Enrolment("https://rundruf.example", "i-1", "t-1")


@pytest.mark.parametrize("case", ["missing", "not JSON", "a list"])
def test_run_exits_not_enrolled_with_the_command_that_mends_it(tmp_path: Path, case: str) -> None:
    path = tmp_path / "agent.json"
    write(path, BROKEN[case])
    env = clean_env(
        RUNDRUF_AGENT_PBX="sim",
        RUNDRUF_AGENT_DIALER="sim",
        RUNDRUF_AGENT_CONFIG_PATH=str(path),
        RUNDRUF_AGENT_STATE_DIR=str(tmp_path / "state"),
        RUNDRUF_AGENT_SIM_STATE=str(tmp_path / "sim.json"),
    )

    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == exit_codes.NOT_ENROLLED == 4, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("rundruf agent: ")
    assert "rundruf-service agent enroll" in done.stderr
    assert not (tmp_path / "state").exists()  # nothing was started


def test_the_agents_exit_codes_are_distinct() -> None:
    codes = [exit_codes.OK, exit_codes.FAILED, exit_codes.SETTINGS, exit_codes.REFUSED]
    assert len({*codes, exit_codes.NOT_ENROLLED}) == 5
    assert set(exit_codes.PERMANENT) == {
        exit_codes.SETTINGS,
        exit_codes.REFUSED,
        exit_codes.NOT_ENROLLED,
    }
