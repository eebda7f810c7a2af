"""The Windows installation files: the service host's pure parts and the env examples."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from edge_agent.settings import load_run_settings

OPS = Path(__file__).resolve().parents[2] / "ops" / "windows"


def service_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rundruf_service", OPS / "rundruf_service.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_service_host_imports_without_pywin32() -> None:
    module = service_module()

    assert not hasattr(module, "AgentService")  # only where pywin32 is
    assert module.main(["rundruf_service.py", "agent", "install"]) == 2
    assert module.main(["rundruf_service.py", "reboot"]) == 2


def test_the_children_run_the_agent_and_the_job_service() -> None:
    module = service_module()

    # The customer install's commands, which import nothing of the central service.
    assert module.child_command("agent", "py.exe") == ["py.exe", "-m", "edge_agent", "run"]
    assert module.child_command("jobservice", "py.exe") == ["py.exe", "-m", "swyx_jobservice"]


def test_the_env_file_sets_only_rundruf_settings(tmp_path: Path) -> None:
    module = service_module()
    folder = tmp_path / "Rundruf"
    folder.mkdir()
    (folder / "agent.env").write_text(
        '# comment\n\nRUNDRUF_AGENT_PBX=swyx\nRUNDRUF_AGENT_SIP_PASSWORD="a b=c"\n',
        encoding="utf-8",
    )

    env = module.child_environment("agent", {"ProgramData": str(tmp_path), "PATH": "x"})

    assert env["RUNDRUF_AGENT_PBX"] == "swyx"
    assert env["RUNDRUF_AGENT_SIP_PASSWORD"] == "a b=c"
    assert env["PATH"] == "x"
    with pytest.raises(ValueError, match="line 1"):
        module.read_env_file("PATH=C:\\evil")
    with pytest.raises(ValueError, match="line 2"):
        module.read_env_file("RUNDRUF_A=1\nno equals sign")


@pytest.mark.parametrize("name", ["agent.env.example", "jobservice.env.example"])
def test_the_env_examples_parse(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    values = service_module().read_env_file((OPS / name).read_text(encoding="utf-8"))

    assert values
    if name.startswith("agent"):
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        # `agent run` reads them: both adapters chosen, neither the simulator.
        settings = load_run_settings()
        assert (settings.pbx, settings.dialer) == ("swyx", "sip")
        assert (settings.swyx_transport, settings.sip_profile) == ("local", "swyx")


def test_the_prerequisites_checker_covers_what_the_issue_asks() -> None:
    text = (OPS / "Test-RundrufPrerequisites.ps1").read_text(encoding="utf-8")

    for check in ("BuildNumber", "IpPbx", "Get-NetTCPConnection", "Test-NetConnection", "exit 1"):
        assert check in text
