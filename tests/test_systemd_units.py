"""The example systemd units in ops/systemd/ start the right command and restart it."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "ops" / "systemd"


def _unit(command: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((UNITS / f"rundruf-{command}.service").read_text())
    return parser


@pytest.mark.parametrize("command", ["serve", "worker", "scheduler"])
def test_its_unit_restarts_the_right_rundruf_command(command: str) -> None:
    unit = _unit(command)
    service = unit["Service"]
    executable, *arguments = shlex.split(service["ExecStart"])
    assert Path(executable).name == "rundruf" and arguments == [command]
    assert service["Restart"] in {"on-failure", "always"}
    assert float(service["RestartSec"]) > 0
    assert service["EnvironmentFile"].startswith("/etc/rundruf/")
    assert service["User"] not in {"", "root"}
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    after = unit["Unit"]["After"].split()
    assert {"network-online.target", "postgresql.service", "redis.service"} <= set(after)
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_there_is_a_unit_for_each_central_process_and_no_other() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == [
        "rundruf-scheduler.service",
        "rundruf-serve.service",
        "rundruf-worker.service",
    ]
