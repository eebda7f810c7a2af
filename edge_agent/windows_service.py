"""Windows services for the Rundruf agent and the job service on the Swyx server:
`rundruf-service` (or `python -m edge_agent.windows_service`), from `pip install rundruf`.

    rundruf-service files C:\\Rundruf\\install     (the env examples, the prerequisites checker)
    rundruf-service agent enroll --server https://... --license ...
    rundruf-service agent --startup auto install
    rundruf-service jobservice --startup auto install
    rundruf-service agent start | stop | remove

Each service runs one child process with the Python that installed it
(`python -m edge_agent run`, `python -m swyx_jobservice`: the customer install's
`rundruf-agent run` and `rundruf-jobservice`) and the environment
from `%ProgramData%\\Rundruf\\<name>.env` (KEY=VALUE lines; the settings of
`edge_agent/settings.py` and `swyx_jobservice/settings.py`). The child is restarted
after a crash (after 5 s, doubling with each crash in a row up to 5 minutes); an exit
that no restart can mend (each service's own codes: edge_agent/exit_codes.py,
swyx_jobservice/exit_codes.py) stops the service with the reason in its log. Stopping
the service closes the child's standard input (the child runs with
`--stop-with-stdin`, edge_agent/stopping.py), so it ends its work cleanly; after
STOP_GRACE_S it is ended hard (TerminateProcess). The child works in
`%ProgramData%\\Rundruf` (not in the service host's System32), and the agent's
enrolment and state are in `%ProgramData%\\Rundruf\\agent` unless `agent.env` names
other places (`RUNDRUF_AGENT_CONFIG_PATH`, `RUNDRUF_AGENT_STATE_DIR`). The folders a
service owns are made private to its account when missing (`own_folders`).
`agent enroll` runs the agent's enrolment exactly so (same env file, same folder): it
writes where the service reads, whatever the administrator's shell has set.
Needs pywin32, which `pip install rundruf` brings on Windows. Not verified on a real Swyx
server (ops/windows/README.md).

Everything but the service class itself works on any system and is tested on Linux
(`tests/agent/test_windows_ops.py`, `test_windows_stop.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edge_agent import exit_codes as agent_exit_codes
from edge_agent import stopping
from edge_agent.files import private_dir
from swyx_jobservice import exit_codes as jobservice_exit_codes

PROG = "rundruf-service"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    display: str
    description: str
    args: tuple[str, ...]  # the child's, after the Python
    # Exit codes that no restart can mend (the child's own table), and what the log says.
    permanent: Mapping[int, str]


SERVICES: dict[str, ServiceSpec] = {
    "agent": ServiceSpec(
        name="RundrufAgent",
        display="Rundruf Manager Service (agent)",
        description="Rundruf: commands from the central service, broadcasts, SIP dialer.",
        args=("-m", "edge_agent", "run"),
        permanent=agent_exit_codes.PERMANENT,
    ),
    "jobservice": ServiceSpec(
        name="RundrufJobService",
        display="Rundruf Job Service",
        description="Rundruf: takes triggered broadcasts from SwyxWare's call routing.",
        args=("-m", "swyx_jobservice"),
        permanent=jobservice_exit_codes.PERMANENT,
    ),
}
ENROLL_ARGS = ["-m", "edge_agent", "enroll"]
RESTART_PAUSE_S = 5.0
# A child crashing again and again waits longer each time (a log line every 5 s for
# hours helps nobody), up to this.
RESTART_PAUSE_MAX_S = 300.0
# The child stops when its standard input closes: a service has no console, so no
# signal Python could handle reaches it (edge_agent/stopping.py).
STOP_FLAG = stopping.FLAG
STOP_GRACE_S = 15.0


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("ProgramData", r"C:\ProgramData")) / "Rundruf"


def read_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and lines starting with # are skipped; a value may be
    quoted with double quotes. Keys must start with RUNDRUF_ (nothing else is changed)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.startswith("RUNDRUF_") or not key.replace("_", "").isalnum():
            raise ValueError(f"line {number}: expected RUNDRUF_NAME=value")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        values[key] = value
    return values


def child_command(kind: str, python: str = sys.executable) -> list[str]:
    return [python, *SERVICES[kind].args, STOP_FLAG]


def default_settings(kind: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The one documented place of the agent's enrolment and state, and of the job
    service's jobs (ops/windows/README.md)."""
    if kind == "jobservice":
        return {"RUNDRUF_JOBSERVICE_DATA_DIR": str(data_dir(environ) / "jobservice")}
    folder = data_dir(environ) / "agent"
    return {
        "RUNDRUF_AGENT_CONFIG_PATH": str(folder / "agent.json"),
        "RUNDRUF_AGENT_STATE_DIR": str(folder),
    }


def child_environment(kind: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The inherited environment, then the documented places (over whatever an
    administrator's shell has set), then `<kind>.env`, which wins over both."""
    path = data_dir(environ) / f"{kind}.env"
    env = dict(environ)
    env.update(default_settings(kind, environ))
    if path.exists():
        env.update(read_env_file(path.read_text(encoding="utf-8")))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def permanent_exit(kind: str, returncode: int) -> str | None:
    """Why a restart cannot help when `kind`'s child ended with `returncode` (read in
    that service's own table), or None."""
    return SERVICES[kind].permanent.get(returncode)


def restart_pause(kind: str, returncode: int, crashes: int) -> float | None:
    """Seconds to wait before starting `kind`'s child again that ended with `returncode`
    after `crashes` ends in a row; None when a restart cannot help (the service stops)."""
    if permanent_exit(kind, returncode) is not None:
        return None
    return min(RESTART_PAUSE_S * 2.0 ** max(0, crashes - 1), RESTART_PAUSE_MAX_S)


def own_folders(kind: str, environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The folders `kind`'s service owns: `%ProgramData%\\Rundruf` (the .env files with
    tokens and the SIP password), its logs, and where its settings keep its state."""
    folder = data_dir(environ)
    env = child_environment(kind, environ)
    if kind == "agent":
        state = [
            Path(env["RUNDRUF_AGENT_CONFIG_PATH"]).parent,
            Path(env["RUNDRUF_AGENT_STATE_DIR"]),
        ]
    else:
        state = [Path(env["RUNDRUF_JOBSERVICE_DATA_DIR"])]
    owned = [folder, folder / "logs", *(folder / path for path in state)]
    return list(dict.fromkeys(owned))  # an absolute path stays as it is; no duplicates


def make_own_folders(kind: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Makes the folders `kind`'s service owns where they are missing, readable by the
    service's account, SYSTEM and the Administrators only (files.private_dir; on Windows
    a protected DACL, not ProgramData's rights, under which Users may read); the logs."""
    for folder in own_folders(kind, environ):
        private_dir(folder)
    return data_dir(environ) / "logs"


def start_child(
    kind: str,
    stdout: IO[bytes] | int,
    environ: Mapping[str, str] = os.environ,
    python: str = sys.executable,
) -> subprocess.Popen[bytes]:
    """The service's child, in `%ProgramData%\\Rundruf`: a relative path in a setting
    lands there, not in the folder the service host happens to run in."""
    return subprocess.Popen(  # noqa: S603 (fixed command, no shell)
        child_command(kind, python),
        env=child_environment(kind, environ),
        cwd=data_dir(environ),
        stdin=subprocess.PIPE,  # closed to stop it: see stop_child
        stdout=stdout,
        stderr=subprocess.STDOUT,
    )


def stop_child(child: subprocess.Popen[bytes], grace: float = STOP_GRACE_S) -> int:
    """Asks the child to stop by closing its standard input, waits `grace` seconds for
    it to finish cleanly, then ends it hard; its exit code."""
    if child.stdin is not None:
        with contextlib.suppress(OSError):
            child.stdin.close()
    try:
        return child.wait(grace)
    except subprocess.TimeoutExpired:
        child.terminate()
        return child.wait(10)


def enroll(
    args: Sequence[str], environ: Mapping[str, str] = os.environ, python: str = sys.executable
) -> int:
    """`agent enroll …`: the agent's enrolment with the service's environment and folder,
    so `agent.json` lands where the service reads it. The folder must exist with the
    service account's rights (made by the installer as ops/windows/README.md says, or by
    the service's first start): one made now would be this administrator's, not the
    service account's."""
    env = child_environment("agent", environ)
    folder = data_dir(environ)
    config = folder / env["RUNDRUF_AGENT_CONFIG_PATH"]  # an absolute path stays as it is
    for needed in (folder, config.parent):
        if not needed.is_dir():
            print(
                f"{PROG}: {needed} does not exist; create it first with the rights "
                "of ops/windows/README.md (step 3), so that the service's account can read "
                "what enrolment writes there",
                file=sys.stderr,
            )
            return 2
    done = subprocess.run(  # noqa: S603 (fixed command, no shell)
        [python, *ENROLL_ARGS, *args], env=env, cwd=folder, check=False
    )
    return done.returncode


def _pywin32() -> tuple[Any, Any, Any] | None:
    try:
        return (
            importlib.import_module("win32serviceutil"),
            importlib.import_module("win32service"),
            importlib.import_module("win32event"),
        )
    except ImportError:
        return None


def _service_class(kind: str, class_name: str) -> Any:
    modules = _pywin32()
    if modules is None:
        raise RuntimeError(
            "the Windows services need pywin32 (pip install rundruf brings it on Windows)"
        )
    win32serviceutil, win32service, win32event = modules
    spec = SERVICES[kind]
    framework: Any = win32serviceutil.ServiceFramework

    class Service(framework):  # type: ignore[misc]
        _svc_name_ = spec.name
        _svc_display_name_ = spec.display
        _svc_description_ = spec.description

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.stop_event = win32event.CreateEvent(None, 0, 0, None)
            self.child: subprocess.Popen[bytes] | None = None

        def SvcStop(self) -> None:
            # SvcDoRun stops the child (stop_child) and returns; tell the SCM how long.
            self.ReportServiceStatus(
                win32service.SERVICE_STOP_PENDING, waitHint=int((STOP_GRACE_S + 15) * 1000)
            )
            win32event.SetEvent(self.stop_event)

        def SvcDoRun(self) -> None:
            log_dir = make_own_folders(kind)
            crashes = 0
            while True:
                with open(log_dir / f"{kind}.log", "ab") as log:
                    self.child = start_child(kind, log)
                    started = time.monotonic()
                    while self.child.poll() is None:
                        if win32event.WaitForSingleObject(self.stop_event, 1000) == 0:
                            stop_child(self.child)
                            return
                    code = stop_child(self.child, 0)  # ended: only its stdin pipe to close
                    # A child that ran for a while before it ended starts the count anew.
                    crashes = 1 if time.monotonic() - started > RESTART_PAUSE_MAX_S else crashes + 1
                    pause = restart_pause(kind, code, crashes)
                    if pause is None:
                        reason = permanent_exit(kind, code)
                        log.write(
                            f"rundruf service: stopped, exit code {code}: {reason}\n".encode()
                        )
                        return
                # Waits for the pause or a stop, whichever comes first.
                if win32event.WaitForSingleObject(self.stop_event, int(pause * 1000)) == 0:
                    return

    # pywin32's service host finds the class by module and name: make both the global's.
    Service.__name__ = Service.__qualname__ = class_name
    return Service


# Module-level classes, as pywin32's service host imports them by name (Windows only).
CLASS_NAMES = {"agent": "AgentService", "jobservice": "JobService"}
if _pywin32() is not None:  # pragma: no cover - Windows
    AgentService = _service_class("agent", "AgentService")
    JobService = _service_class("jobservice", "JobService")


def main(argv: Sequence[str] | None = None) -> int:
    """`rundruf-service`: the services' commands (pywin32's, and `agent enroll`), and
    `files`, which needs no pywin32 either."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] and args[0] in SERVICES:
        return _service_command(args[0], args[1:])
    parser = _parser()
    try:
        parsed = parser.parse_args(args)
    except SystemExit as exc:  # --help, or a wrong command: argparse has said so
        return int(exc.code or 0)
    return write_files(parsed.folder, overwrite=parsed.overwrite)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The Rundruf agent and job service as Windows services (pywin32) on the "
        "Swyx server; ops/windows/README.md says how to install them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for kind, spec in SERVICES.items():
        # Handed to pywin32 as they are (never parsed here): listed for --help only.
        commands.add_parser(
            kind,
            help=f"{spec.display}: [--startup auto] install | start | stop | remove | "
            "debug" + (" | enroll --server URL --license KEY" if kind == "agent" else ""),
        )
    files = commands.add_parser(
        "files", help="write the env examples and the prerequisites checker into a folder"
    )
    files.add_argument("folder", type=Path, help="e.g. C:\\Rundruf\\install")
    files.add_argument("--overwrite", action="store_true", help="replace files already there")
    return parser


def _service_command(kind: str, args: list[str]) -> int:
    if kind == "agent" and args[:1] == ["enroll"]:
        return enroll(args[1:])  # needs no pywin32
    modules = _pywin32()
    if modules is None:
        print(
            f"{PROG}: the Windows services need pywin32, which pip install rundruf brings "
            "on Windows (only `agent enroll` and `files` work without it)",
            file=sys.stderr,
        )
        return 2
    service = globals()[CLASS_NAMES[kind]]
    modules[0].HandleCommandLine(service, argv=[f"{PROG} {kind}", *args])
    return 0


# The installer's files, shipped in the package (edge_agent/windows/).
INSTALL_FILES = Path(__file__).with_name("windows")
INSTALL_FILE_NAMES = (
    "agent.env.example",
    "jobservice.env.example",
    "Test-RundrufPrerequisites.ps1",
)


def write_files(folder: Path, *, overwrite: bool = False) -> int:
    """`files FOLDER`: copies the env examples and the prerequisites checker there;
    refuses (changing nothing) where one exists, unless `overwrite`."""
    targets = [folder / name for name in INSTALL_FILE_NAMES]
    present = [str(path) for path in targets if path.exists()]
    if present and not overwrite:
        print(
            f"{PROG}: already there (--overwrite replaces them): {', '.join(present)}",
            file=sys.stderr,
        )
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    for target in targets:
        target.write_bytes((INSTALL_FILES / target.name).read_bytes())
        print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
