"""The Windows service host (edge_agent/windows_service.py, `rundruf-service`): its pure
parts, the service class with pywin32's modules faked, and the installer's files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

from edge_agent import exit_codes, windows_service
from edge_agent.settings import load_run_settings
from swyx_jobservice import exit_codes as jobservice_exit_codes
from tests.agent.windows_fakes import as_on_windows

ROOT = Path(__file__).resolve().parents[2]
INSTALL_FILES = ROOT / "edge_agent" / "windows"


def service_module() -> ModuleType:
    return windows_service


def test_the_service_host_imports_without_pywin32(capsys: pytest.CaptureFixture[str]) -> None:
    module = service_module()

    assert not hasattr(module, "AgentService")  # only where pywin32 is
    assert module.main(["agent", "install"]) == 2
    assert "need pywin32" in capsys.readouterr().err
    assert module.main(["reboot"]) == 2
    assert module.main(["--help"]) == 0
    assert "{agent,jobservice,files}" in capsys.readouterr().out


def test_the_children_run_the_agent_and_the_job_service() -> None:
    module = service_module()

    # The customer install's commands, which import nothing of the central service.
    stop = "--stop-with-stdin"  # how the service stops them (tests/agent/test_windows_stop.py)
    assert module.child_command("agent", "py.exe") == ["py.exe", "-m", "edge_agent", "run", stop]
    assert module.child_command("jobservice", "py.exe") == ["py.exe", "-m", "swyx_jobservice", stop]


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


# --- enrolment writes where the service reads ------------------------------------------

# Stands in for the Python that runs `-m edge_agent enroll|run`: it reports where the agent's
# own settings put the enrolment and the state, as the real commands would read them.
FAKE_PYTHON = """#!{python}
import json, os, sys
sys.path.insert(0, {root!r})
from edge_agent.settings import AgentBaseSettings
settings = AgentBaseSettings()
with open(os.environ["FAKE_PYTHON_OUT"], "a") as out:
    out.write(json.dumps({{
        "args": sys.argv[1:],
        "config": str(settings.config_path.resolve()),
        "state": str(settings.state_dir.resolve()),
    }}) + "\\n")
"""


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    program = tmp_path / "fake-python"
    program.write_text(FAKE_PYTHON.format(python=sys.executable, root=str(ROOT)))
    program.chmod(0o755)
    return program


def enrol_then_run(
    module: ModuleType, environ: dict[str, str], python: Path
) -> list[dict[str, object]]:
    assert (
        module.enroll(
            ["--server", "https://rundruf.example", "--license", "K"], environ, str(python)
        )
        == 0
    )
    module.stop_child(module.start_child("agent", subprocess.DEVNULL, environ, str(python)), 30)
    lines = Path(environ["FAKE_PYTHON_OUT"]).read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_enrolment_writes_where_the_service_reads(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = service_module()
    agent_folder = tmp_path / "Rundruf" / "agent"
    agent_folder.mkdir(parents=True)  # made by the installer, with the service's rights
    shell = tmp_path / "somewhere"
    shell.mkdir()
    monkeypatch.chdir(shell)  # the administrator's shell, elsewhere ...
    environ = {
        "ProgramData": str(tmp_path),
        "PATH": os.environ.get("PATH", ""),
        "FAKE_PYTHON_OUT": str(tmp_path / "out.jsonl"),
        "RUNDRUF_AGENT_CONFIG_PATH": "left-over.json",  # ... with a stray setting
    }

    enrolment, service = enrol_then_run(module, environ, fake_python)

    assert enrolment["args"] == [
        "-m",
        "edge_agent",
        "enroll",
        "--server",
        "https://rundruf.example",
        "--license",
        "K",
    ]
    assert service["args"] == ["-m", "edge_agent", "run", "--stop-with-stdin"]
    for child in (enrolment, service):
        assert (child["config"], child["state"]) == (
            str(agent_folder / "agent.json"),
            str(agent_folder),
        )


def test_the_env_file_moves_enrolment_and_service_together(
    tmp_path: Path, fake_python: Path
) -> None:
    module = service_module()
    (tmp_path / "Rundruf" / "elsewhere").mkdir(parents=True)
    (tmp_path / "Rundruf" / "agent.env").write_text(
        f"RUNDRUF_AGENT_CONFIG_PATH=elsewhere{os.sep}agent.json\nRUNDRUF_AGENT_STATE_DIR=elsewhere\n",
        encoding="utf-8",
    )
    environ = {"ProgramData": str(tmp_path), "FAKE_PYTHON_OUT": str(tmp_path / "out.jsonl")}

    enrolment, service = enrol_then_run(module, environ, fake_python)

    # A relative place is taken in %ProgramData%/Rundruf, the children's working folder.
    folder = tmp_path / "Rundruf" / "elsewhere"
    assert enrolment["config"] == service["config"] == str(folder / "agent.json")
    assert enrolment["state"] == service["state"] == str(folder)


def test_enrolment_refuses_without_the_agent_folder(
    tmp_path: Path, fake_python: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = service_module()
    (tmp_path / "Rundruf").mkdir()
    environ = {"ProgramData": str(tmp_path), "FAKE_PYTHON_OUT": str(tmp_path / "out.jsonl")}

    code = module.enroll(["--server", "https://x", "--license", "K"], environ, str(fake_python))

    assert code == 2
    assert "does not exist; create it first with the rights" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "Rundruf" / "agent").exists()  # nothing made with the wrong rights


def test_the_service_host_runs_the_agents_enrolment_without_pywin32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Rundruf" / "agent").mkdir(parents=True)
    monkeypatch.setenv("ProgramData", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))

    code = service_module().main(["agent", "enroll", "--help"])

    assert code == 0
    assert "--license" in capfd.readouterr().out  # the agent's own enrol command answered


@pytest.mark.parametrize("name", ["agent.env.example", "jobservice.env.example"])
def test_the_env_examples_parse(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    values = service_module().read_env_file((INSTALL_FILES / name).read_text(encoding="utf-8"))

    assert values
    if name.startswith("agent"):
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        # `agent run` reads them: both adapters chosen, neither the simulator.
        settings = load_run_settings()
        assert (settings.pbx, settings.dialer) == ("swyx", "sip")
        assert (settings.swyx_transport, settings.sip_profile) == ("local", "swyx")


def test_the_prerequisites_checker_covers_what_the_issue_asks() -> None:
    text = (INSTALL_FILES / "Test-RundrufPrerequisites.ps1").read_text(encoding="utf-8")

    for check in ("BuildNumber", "IpPbx", "Get-NetTCPConnection", "Test-NetConnection", "exit 1"):
        assert check in text


class _FakeServiceFramework:
    def __init__(self, args: object) -> None:
        self.statuses: list[int] = []

    def ReportServiceStatus(self, status: int, waitHint: int = 0) -> None:
        self.statuses.append(status)


def _fake_service_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """pywin32's service modules as far as the service class uses them: events are
    threading.Events, WaitForSingleObject answers 0 when set (WAIT_OBJECT_0)."""
    serviceutil = ModuleType("win32serviceutil")
    serviceutil.ServiceFramework = _FakeServiceFramework  # type: ignore[attr-defined]
    service = ModuleType("win32service")
    service.SERVICE_STOP_PENDING = 3  # type: ignore[attr-defined]
    event = ModuleType("win32event")
    event.CreateEvent = lambda *_: threading.Event()  # type: ignore[attr-defined]
    event.SetEvent = lambda e: e.set()  # type: ignore[attr-defined]
    event.WaitForSingleObject = lambda e, ms: 0 if e.wait(ms / 1000) else 258  # type: ignore[attr-defined]
    return serviceutil, service, event


def test_a_crashing_child_is_restarted_later_and_later() -> None:
    module = service_module()

    pauses = [module.restart_pause("agent", 1, crashes) for crashes in range(1, 10)]
    assert pauses[:4] == [5.0, 10.0, 20.0, 40.0]
    assert pauses[-1] == module.RESTART_PAUSE_MAX_S
    assert module.restart_pause("agent", 0, 1) == 5.0  # an unexpected clean end: started again


def test_each_services_exit_code_is_read_in_its_own_table() -> None:
    module = service_module()

    for code in (exit_codes.SETTINGS, exit_codes.REFUSED, exit_codes.NOT_ENROLLED):
        assert module.restart_pause("agent", code, 1) is None
    assert module.restart_pause("jobservice", jobservice_exit_codes.SETTINGS, 1) is None
    # uvicorn's 3 for a taken port is not the agent's "enrol again": the job service is
    # started again later (and passes on 1 anyway: tests/agent/test_windows_stop.py).
    assert module.restart_pause("jobservice", exit_codes.REFUSED, 1) == 5.0
    assert module.restart_pause("jobservice", jobservice_exit_codes.FAILED, 1) == 5.0
    assert module.permanent_exit("agent", exit_codes.NOT_ENROLLED) == (
        "not enrolled: rundruf-service agent enroll"
    )


def test_the_service_stops_for_good_when_its_settings_are_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real agent without RUNDRUF_AGENT_PBX/DIALER exits 2: restarting it every few
    seconds would only fill the log, so the service stops and its log says why."""
    module = service_module()
    monkeypatch.setattr(module, "_pywin32", _fake_service_modules)
    monkeypatch.setenv("ProgramData", str(tmp_path))
    for name in ("RUNDRUF_AGENT_PBX", "RUNDRUF_AGENT_DIALER"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "Rundruf").mkdir()
    service = module._service_class("agent", "AgentService")(["AgentService"])

    runner = threading.Thread(target=service.SvcDoRun, daemon=True)
    runner.start()
    runner.join(60)

    assert not runner.is_alive(), "the service restarts a child that cannot work"
    log = (tmp_path / "Rundruf" / "logs" / "agent.log").read_text(encoding="utf-8")
    assert "RUNDRUF_AGENT_PBX" in log
    assert log.count("Nothing was started.") == 1
    assert "rundruf service: stopped, exit code 2: the settings are incomplete or wrong" in log


def test_a_stop_during_the_restart_pause_ends_the_service_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = service_module()
    monkeypatch.setattr(module, "_pywin32", _fake_service_modules)
    monkeypatch.setenv("ProgramData", str(tmp_path))
    (tmp_path / "Rundruf").mkdir()
    real_start = module.start_child

    def crashed_child(kind: str, log: object) -> subprocess.Popen[bytes]:
        # A child that has crashed (exit 1) before the service looks at it again.
        child = real_start(kind, log, python=sys.executable)
        child.wait()
        return child

    monkeypatch.setattr(module, "child_command", lambda kind, python: [python, "-c", "exit(1)"])
    monkeypatch.setattr(module, "start_child", crashed_child)
    monkeypatch.setattr(module, "RESTART_PAUSE_S", 600.0)
    service = module._service_class("agent", "AgentService")(["AgentService"])
    service.stop_event.set()  # the stop arrives during the pause before the restart

    runner = threading.Thread(target=service.SvcDoRun, daemon=True)
    runner.start()
    runner.join(20)

    assert not runner.is_alive(), "the service slept through its stop"
    assert service.child.returncode == 1


def test_the_job_service_keeps_its_jobs_in_its_own_folder(tmp_path: Path) -> None:
    """Not in a `.rundruf` folder relative to wherever the service host starts it."""
    module = service_module()

    env = module.child_environment("jobservice", {"ProgramData": str(tmp_path)})

    assert env["RUNDRUF_JOBSERVICE_DATA_DIR"] == str(tmp_path / "Rundruf" / "jobservice")


def test_the_service_stops_for_good_when_the_agent_is_not_enrolled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No agent.json: restarting would not enrol it; the log names the command that does."""
    module = service_module()
    monkeypatch.setattr(module, "_pywin32", _fake_service_modules)
    monkeypatch.setenv("ProgramData", str(tmp_path))
    (tmp_path / "Rundruf").mkdir()
    (tmp_path / "Rundruf" / "agent.env").write_text(
        "RUNDRUF_AGENT_PBX=sim\nRUNDRUF_AGENT_DIALER=sim\n", encoding="utf-8"
    )
    service = module._service_class("agent", "AgentService")(["AgentService"])

    runner = threading.Thread(target=service.SvcDoRun, daemon=True)
    runner.start()
    runner.join(60)

    assert not runner.is_alive(), "the service restarts an agent that is not enrolled"
    log = (tmp_path / "Rundruf" / "logs" / "agent.log").read_text(encoding="utf-8")
    assert log.count("rundruf agent: no enrolment in ") == 1
    assert "enrol with `rundruf-service agent enroll --server URL --license KEY`" in log
    assert (
        "rundruf service: stopped, exit code 4: not enrolled: rundruf-service agent enroll" in log
    )


# --- the folders a service owns are private ---------------------------------------------


def test_the_service_makes_the_folders_it_owns_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """%ProgramData%\\Rundruf (the .env files), logs and the agent's folder: made with a
    protected DACL on Windows (the fakes record it), 0700 elsewhere; never with the rights
    they would inherit from ProgramData, under which Users may read."""
    fakes = as_on_windows(monkeypatch)
    module = service_module()
    monkeypatch.setattr(module, "_pywin32", _fake_service_modules)
    monkeypatch.setenv("ProgramData", str(tmp_path))
    for name in ("RUNDRUF_AGENT_PBX", "RUNDRUF_AGENT_DIALER"):
        monkeypatch.delenv(name, raising=False)
    service = module._service_class("agent", "AgentService")(["AgentService"])

    runner = threading.Thread(target=service.SvcDoRun, daemon=True)
    runner.start()
    runner.join(60)

    assert not runner.is_alive()
    data = tmp_path / "Rundruf"
    made = [path for path, *_ in fakes.pywin32.protected]
    assert made == [str(data), str(data / "logs"), str(data / "agent")]
    for path, _kind, info, dacl in fakes.pywin32.protected:
        assert info & 0x80000000, f"{path} inherits ProgramData's rights"  # PROTECTED_DACL
        assert [sid for *_, sid in dacl.aces] == [
            fakes.pywin32.account,
            "S-1-5-18",
            "S-1-5-32-544",
        ]
    for folder in map(Path, made):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_job_services_own_folders_follow_its_settings(tmp_path: Path) -> None:
    module = service_module()
    (tmp_path / "Rundruf").mkdir()
    (tmp_path / "Rundruf" / "jobservice.env").write_text(
        "RUNDRUF_JOBSERVICE_DATA_DIR=jobs\n", encoding="utf-8"
    )
    data = tmp_path / "Rundruf"

    folders = module.own_folders("jobservice", {"ProgramData": str(tmp_path)})

    assert folders == [data, data / "logs", data / "jobs"]


def test_a_folder_the_installer_made_keeps_its_rights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = as_on_windows(monkeypatch)
    module = service_module()
    (tmp_path / "Rundruf" / "agent").mkdir(parents=True)

    module.make_own_folders("agent", {"ProgramData": str(tmp_path)})

    assert [path for path, *_ in fakes.pywin32.protected] == [str(tmp_path / "Rundruf" / "logs")]


# --- the installer's files ----------------------------------------------------------------


def test_files_writes_the_env_examples_and_the_checker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "install"

    assert service_module().main(["files", str(target)]) == 0

    names = sorted(path.name for path in target.iterdir())
    assert names == ["Test-RundrufPrerequisites.ps1", "agent.env.example", "jobservice.env.example"]
    for name in names:
        assert (target / name).read_bytes() == (INSTALL_FILES / name).read_bytes()
    assert str(target / "agent.env.example") in capsys.readouterr().out


def test_files_changes_nothing_where_one_is_there_already(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "agent.env.example").write_text("RUNDRUF_AGENT_PBX=swyx\n", encoding="utf-8")

    assert service_module().main(["files", str(tmp_path)]) == 2

    assert "already there (--overwrite replaces them)" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["agent.env.example"]
    assert service_module().main(["files", str(tmp_path), "--overwrite"]) == 0
    assert (tmp_path / "agent.env.example").read_bytes() == (
        INSTALL_FILES / "agent.env.example"
    ).read_bytes()
