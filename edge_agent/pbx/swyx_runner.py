"""Running the Swyx adapter's PowerShell scripts: locally or over PowerShell Remoting.

A runner gets one of the fixed scripts of `swyx_scripts` and its parameters as a
JSON string, and returns what the script printed (one JSON document). Values never
become code: the local runner sends script and parameters as JSON on stdin to a
fixed bootstrap (`-EncodedCommand`, no shell); the remote runner passes the
parameters to PSRP as a typed argument of the script. Tests hand the adapter a fake
runner instead (`tests/agent/swyx_fake.py`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import logging
import subprocess
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Reads {"script": …, "params": …} from stdin and runs the script with the parameters
# as one string argument. Fixed text: nothing from outside is ever part of it.
# Both directions are ASCII (the scripts escape everything else as \uXXXX), so no
# console code page matters: a service has no console whose encoding could be set.
# PowerShell's words are bounded here for memory only: the adapter hides the secrets in
# them and then cuts to what it shows (swyx.MESSAGE_MAX). Cutting first could split a
# password the adapter would then no longer find (issue 14, point 5).
TEXT_MAX = 20_000
BOOTSTRAP = """\
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$body = [ScriptBlock]::Create([string]$request.script)
& $body -ParamsJson ([string]$request.params)
"""


class RunnerError(Exception):
    """Raised when PowerShell could not be started or reached, or gave no usable answer."""

    def __init__(self, message: str, *, unreachable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        # True: the host or PowerShell is not there (retry later); False: it answered wrongly.
        self.unreachable = unreachable


class PowerShellRunner(ABC):
    """Runs one fixed script with its parameters and returns its standard output."""

    # True when the runner itself logs in with the administrator's login (WinRM);
    # False when PowerShell runs as this process's own Windows account.
    uses_login = True

    @abstractmethod
    async def run(self, script: str, params_json: str, *, seconds: float) -> str: ...

    def set_login(self, host: str, user: str, password: str) -> None:  # noqa: B027
        """The server and the administrator's Windows login, for runners that log in."""


def encoded_command(script: str) -> str:
    """PowerShell's `-EncodedCommand` form: base64 of the UTF-16LE text."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def local_command(executable: str = "powershell.exe") -> list[str]:
    return [
        executable,
        "-NoLogo",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-EncodedCommand",
        encoded_command(BOOTSTRAP),
    ]


class LocalPowerShell(PowerShellRunner):
    """`powershell.exe` on this machine (the agent on the Swyx server), one process per script.

    It runs as the agent's Windows account: that account must be a SwyxWare
    administrator (docs/swyx.md). The process is started without a shell, from a
    worker thread with `subprocess`: the event loop, which also paces the calls' audio,
    never waits for it, and no asyncio subprocess support is needed (Windows has it
    only on the Proactor loop). A process that outlives its time is killed.
    """

    uses_login = False
    # After a kill, how long to wait for the process to go and its pipes to close.
    KILL_WAIT_S = 5.0

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = list(command) if command is not None else local_command()

    async def run(self, script: str, params_json: str, *, seconds: float) -> str:
        request = json.dumps({"script": script, "params": params_json}, ensure_ascii=True)
        started = _Started()
        try:
            return await asyncio.to_thread(
                self._run_process, request.encode("ascii"), seconds, started
            )
        except asyncio.CancelledError:
            # The caller gave up (the agent stops): the process must not run on alone.
            started.cancel()
            raise

    def _run_process(self, request: bytes, seconds: float, started: _Started) -> str:
        """In a worker thread: start, feed stdin, wait at most `seconds`, else kill."""
        if started.cancelled.is_set():
            raise RunnerError("cancelled before PowerShell started", unreachable=False)
        try:
            process = subprocess.Popen(  # noqa: S603 - fixed command, no shell
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise RunnerError(f"PowerShell cannot be started ({self.command[0]}): {exc}") from exc
        started.processes.append(process)
        if started.cancelled.is_set():
            # Cancelled while Popen ran: `cancel` found no process to kill, so this thread does.
            self._kill(process)
            raise RunnerError("cancelled while PowerShell started", unreachable=False)
        try:
            stdout, stderr = process.communicate(request, timeout=seconds)
        except subprocess.TimeoutExpired:
            self._kill(process)
            raise RunnerError(f"PowerShell gave no answer within {seconds:g} s") from None
        text = stdout.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
        if process.returncode != 0 and not text:
            reason = stderr.decode("utf-8", errors="replace").strip()[:TEXT_MAX]
            raise RunnerError(
                f"PowerShell ended with code {process.returncode}: {reason}", unreachable=False
            )
        return text

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(OSError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
            process.communicate(timeout=self.KILL_WAIT_S)


@dataclass
class _Started:
    """A local run's process, shared by the event loop and the worker thread: a cancel
    sets `cancelled` before it kills what `processes` holds, and the worker adds its
    process before it looks at `cancelled`, so one of the two always kills it."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cancel(self) -> None:
        self.cancelled.set()
        for process in list(self.processes):
            with contextlib.suppress(OSError):
                process.kill()


class RemotePowerShell(PowerShellRunner):
    """PowerShell Remoting (WinRM) to the Swyx server with the administrator's Windows login.

    Uses `pypsrp` (optional: `pip install rundruf[swyx-remote]`), imported only
    when a script runs, so Linux installs and tests never need it.
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        port: int = 5986,
        ssl: bool = True,
        auth: str = "negotiate",
        cert_validation: bool = True,
    ) -> None:
        self.host, self.port, self.ssl = host, port, ssl
        self.auth, self.cert_validation = auth, cert_validation
        self._user: str | None = None
        self._password: str | None = None

    def set_login(self, host: str, user: str, password: str) -> None:
        self.host, self._user, self._password = host, user, password

    async def run(self, script: str, params_json: str, *, seconds: float) -> str:
        if self.host is None or self._user is None or self._password is None:
            raise RunnerError("no Windows login for PowerShell Remoting yet", unreachable=False)
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._invoke, script, params_json, seconds), seconds + 5
            )
        except TimeoutError:
            raise RunnerError(
                f"the Swyx server {self.host} gave no answer within {seconds:g} s"
            ) from None

    def _invoke(self, script: str, params_json: str, seconds: float) -> str:
        try:
            wsman_module: Any = importlib.import_module("pypsrp.wsman")
            ps_module: Any = importlib.import_module("pypsrp.powershell")
        except ImportError as exc:
            raise RunnerError(
                "PowerShell Remoting needs pypsrp: pip install 'rundruf[swyx-remote]'",
                unreachable=False,
            ) from exc
        try:
            wsman = wsman_module.WSMan(
                self.host,
                port=self.port,
                ssl=self.ssl,
                auth=self.auth,
                username=self._user,
                password=self._password,
                cert_validation=self.cert_validation,
                operation_timeout=int(seconds),
                read_timeout=int(seconds) + 10,
            )
            with wsman, ps_module.RunspacePool(wsman) as pool:
                ps = ps_module.PowerShell(pool)
                # The parameters travel as a typed PSRP argument: data, never code.
                ps.add_script(script).add_parameter("ParamsJson", params_json)
                output = ps.invoke()
                errors = [str(e) for e in ps.streams.error]
        except Exception as exc:  # pypsrp raises its own and requests' errors
            if _is_auth_failure(exc):
                return _login_refused_json(str(exc))
            raise RunnerError(f"PowerShell Remoting to {self.host} failed: {exc}") from exc
        text = "\n".join(str(o) for o in output if o is not None).strip()
        if not text and errors:
            raise RunnerError("; ".join(errors)[:TEXT_MAX], unreachable=False)
        return text


def _is_auth_failure(exc: Exception) -> bool:
    name = type(exc).__name__
    return name in {"AuthenticationError", "InvalidCredentialsError"} or "401" in str(exc)


def _login_refused_json(reason: str) -> str:
    # Same answer shape as a script's refusal, so the adapter maps it in one place.
    return json.dumps({"ok": False, "kind": "login", "message": reason[:TEXT_MAX]})


def same_account(identity: str, entered: str) -> bool:
    """Whether `entered` names the Windows account `identity` (DOMAIN\\user): with or
    without the domain, or as user@domain, ignoring case."""

    def parts(name: str) -> tuple[str, str]:
        name = name.strip().casefold()
        if "\\" in name:
            domain, _, user = name.partition("\\")
            return domain, user
        user, _, domain = name.partition("@")
        return domain.split(".")[0], user

    (id_domain, id_user), (domain, user) = parts(identity), parts(entered)
    return bool(user) and user == id_user and (not domain or domain == id_domain)


def windows_logon_check(user: str, password: str) -> bool:
    """Checks a Windows login with LogonUser (pywin32; Windows only): True if it is valid."""
    win32security: Any = importlib.import_module("win32security")
    domain: str | None = None
    if "\\" in user:
        domain, _, user = user.partition("\\")
    try:
        handle = win32security.LogonUser(
            user,
            domain,
            password,
            win32security.LOGON32_LOGON_NETWORK,
            win32security.LOGON32_PROVIDER_DEFAULT,
        )
    except Exception:  # pywintypes.error: wrong user name or password, account locked, …
        return False
    handle.Close()
    return True
