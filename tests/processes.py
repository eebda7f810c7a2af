"""Real processes for end-to-end tests: `rundruf serve`, `rundruf agent run`, a TCP balancer.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RUNDRUF = [sys.executable, "-m", "api.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDRUF_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(values)
    return env


def wait_until(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Server:
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> Server:
        self.log = log_dir / f"server-{self.port}.log"
        env = dict(self.env, RUNDRUF_PORT=str(self.port))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*RUNDRUF, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(self._healthy, 30, f"server on {self.port}")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited: {self.log and self.log.read_text()[-2000:]}")
        try:
            return httpx.get(self.url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Agent:
    env: dict[str, str]
    state: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.state / "agent.log"

    def enroll(self, server_url: str, license_key: str) -> None:
        subprocess.run(
            [
                *RUNDRUF,
                "agent",
                "enroll",
                "--server",
                server_url,
                "--license",
                license_key,
                "--hostname",
                "swyx-test",
            ],
            env=self.env,
            check=True,
            timeout=60,
            capture_output=True,
        )

    def start(self) -> Agent:
        self.state.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*RUNDRUF, "agent", "run"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def agent_env(state: Path, **extra: str) -> dict[str, str]:
    """The agent on the simulator (chosen explicitly: they have no default), unless `extra`
    chooses otherwise."""
    values = dict(
        RUNDRUF_AGENT_PBX="sim",
        RUNDRUF_AGENT_DIALER="sim",
        RUNDRUF_AGENT_CONFIG_PATH=str(state / "agent.json"),
        RUNDRUF_AGENT_STATE_DIR=str(state / "data"),
        RUNDRUF_AGENT_SIM_STATE=str(state / "swyx-sim.json"),
        RUNDRUF_AGENT_BACKOFF_CAP_SECONDS="1",
        RUNDRUF_AGENT_PING_INTERVAL_SECONDS="5",
        RUNDRUF_AGENT_PING_TIMEOUT_SECONDS="5",
    )
    return clean_env(**{**values, **extra})


class Balancer:
    """A TCP balancer on loopback: round robin, skipping backends that refuse."""

    def __init__(self, backends: list[int], port: int | None = None) -> None:
        self.backends = backends
        self._next = itertools.count()
        self._websockets: list[tuple[int, socket.socket]] = []
        self.port = port or free_port()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def websocket_backends(self) -> list[int]:
        """Backends that hold an open WebSocket passed through this balancer."""
        return [port for port, sock in self._websockets if sock.fileno() != -1]

    def _serve(self, client: socket.socket) -> None:
        first = client.recv(65536)
        start = next(self._next)
        order = [self.backends[(start + i) % len(self.backends)] for i in range(len(self.backends))]
        for port in order:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                continue
        else:
            client.close()
            return
        upstream.settimeout(None)
        upstream.sendall(first)
        if b"upgrade: websocket" in first.lower():
            self._websockets.append((port, upstream))
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, target):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class Client:
    """A GraphQL client over HTTP as a given bearer token."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url + "/graphql"
        self.token = token

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = httpx.post(
            self.url, json={"query": query, "variables": variables}, headers=headers, timeout=30
        )
        body: dict[str, Any] = response.json()
        if body.get("errors"):
            raise AssertionError(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    def login(self, email: str, password: str) -> Client:
        data = self(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
            e=email,
            p=password,
        )
        return Client(self.url.removesuffix("/graphql"), data["login"]["token"])
