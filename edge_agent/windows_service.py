"""Windows services for the Rundruf agent and the job service on the Swyx server.

    python rundruf_service.py agent enroll --server https://... --license ...
    python rundruf_service.py agent --startup auto install
    python rundruf_service.py jobservice --startup auto install
    python rundruf_service.py agent start | stop | remove

Each service runs one child process with the Python that installed it
(`python -m edge_agent run`, `python -m swyx_jobservice`: the customer install's
`rundruf-agent run` and `rundruf-jobservice`) and the environment
from `%ProgramData%\\Rundruf\\<name>.env` (KEY=VALUE lines; the settings of
`edge_agent/settings.py` and `swyx_jobservice/settings.py`). The child is restarted
after a crash (after 5 s, doubling with each crash in a row up to 5 minutes); an exit
that no restart can mend (incomplete settings, a refused enrolment) stops the service
with the reason in its log. Stopping the service closes the child's
standard input (the child runs with `--stop-with-stdin`, edge_agent/stopping.py), so it
ends its work cleanly; after STOP_GRACE_S it is ended hard (TerminateProcess). The
child works in `%ProgramData%\\Rundruf` (not in the service host's System32), and
the agent's enrolment and state are in `%ProgramData%\\Rundruf\\agent` unless
`agent.env` names other places (`RUNDRUF_AGENT_CONFIG_PATH`, `RUNDRUF_AGENT_STATE_DIR`).
`agent enroll` runs the agent's enrolment exactly so (same env file, same folder): it
writes where the service reads, whatever the administrator's shell has set.
Needs pywin32, which `pip install rundruf` brings on Windows. Not verified on a real Swyx
server.

The pure parts (reading the env file, the command line) work on any system and are
tested on Linux (`tests/agent/test_windows_ops.py`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

SERVICES: dict[str, dict[str, Any]] = {
    "agent": {
        "name": "RundrufAgent",
        "display": "Rundruf Manager Service (agent)",
        "description": "Rundruf: commands from the central service, broadcasts, SIP dialer.",
        "args": ["-m", "edge_agent", "run"],
    },
    "jobservice": {
        "name": "RundrufJobService",
        "display": "Rundruf Job Service",
        "description": "Rundruf: takes triggered broadcasts from SwyxWare's call routing.",
        "args": ["-m", "swyx_jobservice"],
    },
}
ENROLL_ARGS = ["-m", "edge_agent", "enroll"]
RESTART_PAUSE_S = 5.0
# A child crashing again and again waits longer each time (a log line every 5 s for
# hours helps nobody), up to this.
RESTART_PAUSE_MAX_S = 300.0
# Exit codes that no restart can mend: the agent's settings are incomplete or wrong (2),
# or the server refused its enrolment (3, enroll again). The service stops and says why.
PERMANENT_EXIT_CODES = {2: "the settings are incomplete or wrong", 3: "enrol again"}
# The child stops when its standard input closes: a service has no console, so no
# signal Python could handle reaches it (edge_agent/stopping.py, its FLAG).
STOP_FLAG = "--stop-with-stdin"
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
    return [python, *SERVICES[kind]["args"], STOP_FLAG]


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


def restart_pause(returncode: int, crashes: int) -> float | None:
    """Seconds to wait before starting a child again that ended with `returncode` after
    `crashes` ends in a row; None when a restart cannot help (the service stops)."""
    if returncode in PERMANENT_EXIT_CODES:
        return None
    return min(RESTART_PAUSE_S * 2 ** max(0, crashes - 1), RESTART_PAUSE_MAX_S)


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
    rights of ops/windows/README.md: one made now would be readable by this
    administrator only, not by the service's account."""
    env = child_environment("agent", environ)
    folder = data_dir(environ)
    config = folder / env["RUNDRUF_AGENT_CONFIG_PATH"]  # an absolute path stays as it is
    for needed in (folder, config.parent):
        if not needed.is_dir():
            print(
                f"rundruf_service: {needed} does not exist; create it first with the rights "
                "of ops/windows/README.md (step 2), so that the service's account can read "
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

    class Service(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = spec["name"]
        _svc_display_name_ = spec["display"]
        _svc_description_ = spec["description"]

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
            log_dir = data_dir() / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
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
                    pause = restart_pause(code, crashes)
                    if pause is None:
                        log.write(
                            f"rundruf service: stopped, exit code {code}: "
                            f"{PERMANENT_EXIT_CODES[code]}\n".encode()
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


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in SERVICES:
        print(__doc__)
        return 2
    kind = argv[1]
    if kind == "agent" and argv[2:3] == ["enroll"]:
        return enroll(argv[3:])  # needs no pywin32
    modules = _pywin32()
    if modules is None:
        print("the Windows services need pywin32 (pip install rundruf brings it on Windows)")
        return 2
    service = globals()[CLASS_NAMES[kind]]
    modules[0].HandleCommandLine(service, argv=[argv[0], *argv[2:]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
