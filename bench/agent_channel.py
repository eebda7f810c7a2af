"""The agent channel under N idle agents: memory per connection and command latency.

    .venv/bin/python bench/agent_channel.py [--agents 1000 10000] [--samples 200]

For each N: a fresh PostgreSQL database with N tenants, each with a license and
one installation, and a tenant admin session for a few sampled tenants; one
``rundruf serve`` process (Redis pub/sub) with N simulated agents (asyncio
WebSocket clients in this process, graphql-transport-ws, ``agentCommands``).
Each tenant holds one open command when its agent connects, so the replay
proves every subscription is live and has done its first database read.

Figures per N:

- time to connect and subscribe all N (batches of --batch, each agent waiting for
  connection_ack and its replayed command);
- server RSS per idle agent: (RSS with all N connected - RSS after warmup) / new agents,
  and the server's CPU while all are idle (a 30 s window holds one safety poll per agent);
- latency from sending a ``createGroup`` mutation (HTTP, tenant admin) to the
  agent receiving the command, p50 and p99, the mutation's own round trip, and the
  difference of the two (push: how long after its answer the agent had the command);
- the floor: a bare ``websockets`` server in its own process with N clients, a
  control connection naming a client and the server forwarding a message to
  it; the same memory and latency figures and the ratios ours / floor.

Targets (issue): p99 under 20 ms at 10,000 agents and at most 2x the floor;
at most 50 KiB of server memory per idle agent.

Prints the table to stdout (progress to stderr), then verdicts, connection and
sample failures grouped by reason, and the most frequent server log records;
server logs that are not empty are kept in a temporary folder it names.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, insert
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from api.models import (
    Command,
    CommandStatus,
    Installation,
    License,
    Role,
    Session,
    Tenant,
    User,
)
from api.security import hash_token, new_token

ROOT = Path(__file__).resolve().parent.parent
RUNDRUF = [sys.executable, "-m", "api.cli"]
PROTOCOL = Subprotocol("graphql-transport-ws")
AGENT_COMMANDS = "subscription { agentCommands { id type payload secrets createdAt } }"
CREATE_GROUP = "mutation($name: String!) { createGroup(name: $name) { id } }"
HELLO = "benchHello"
NOFILE = 65536
WARMUP_AGENTS = 50
WARMUP_SAMPLES = 5
OPEN_TIMEOUT = 90.0  # connect + ack + replay of one agent, under a full batch
SAMPLE_TIMEOUT = 10.0
SAMPLING_LIMIT = 300.0  # seconds for all samples of one phase
SEED_CHUNK = 2000
CLOSE_BATCH = 1000
SETTLE = 5.0  # seconds to wait before a memory or CPU reading

# The floor: forwards "<index> <text>" from the control connection to client <index>.
FLOOR_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve

clients = {}

async def handler(ws):
    first = await ws.recv()
    if first == "control":
        async for message in ws:
            index, _, body = message.partition(" ")
            target = clients.get(int(index))
            if target is not None:
                await target.send(body)
        return
    index = int(first.split()[1])
    clients[index] = ws
    try:
        await ws.send("ready")
        await ws.wait_closed()
    finally:
        clients.pop(index, None)

async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None,
                     ping_interval=20, ping_timeout=20, max_size=65536, backlog=2048):
        await asyncio.Event().wait()

asyncio.run(main())
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes -----------------------------------------------------------------------------


def raise_nofile(wanted: int = NOFILE) -> int:
    """Raises this process's open-files limit; child processes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Process:
    """A child process whose output goes to a log file that is read at the end."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within 30 s; killing it")
                self.popen.kill()
                self.popen.wait(timeout=10)

    def output(self) -> list[str]:
        try:
            return [line for line in self.log_path.read_text().splitlines() if line.strip()]
        except OSError:
            return []


def spawn(name: str, argv: Sequence[str], env: dict[str, str], folder: Path) -> Process:
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as out:
        popen = subprocess.Popen(  # noqa: S603 - our own argv
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    return Process(name, popen, log_path)


async def wait_listening(proc: Process, port: int, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if not proc.alive():
            tail = "\n".join(proc.output()[-20:])
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{tail}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} is not listening after {within:.0f} s") from None
            await asyncio.sleep(0.2)


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ ")
TRACEBACK_BODY = ("Traceback", " ", "\t", "The above exception", "During handling", "^", "~")


def summarize_output(proc: Process, limit: int = 12) -> list[tuple[int, str]]:
    """Distinct log records and exception lines of a process, most frequent first.

    Tracebacks are reduced to their final line (the exception and its message);
    the service logs nothing at WARNING level while all is well.
    """
    counts: Counter[str] = Counter()
    total = 0
    for line in proc.output():
        total += 1
        if line.startswith(TRACEBACK_BODY):
            continue
        counts[TIMESTAMP.sub("", line)[:240]] += 1
    if total == 0:
        log(f"{proc.name} wrote nothing (no warnings or errors)")
        return []
    log(f"{proc.name} wrote {total} log lines; distinct records and exceptions:")
    common = counts.most_common(limit)
    for count, line in ((c, text) for text, c in common):
        print(f"    {count:>7}x  {line}", file=sys.stderr)
    return [(c, text) for text, c in common]


# --- database ------------------------------------------------------------------------------


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def fresh_database(url: str) -> None:
    server, _, name = _plain(url).rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    server, _, name = _plain(url).rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def upgrade_database(env: dict[str, str]) -> None:
    done = subprocess.run(  # noqa: S603 - our own argv
        [*RUNDRUF, "db", "upgrade"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"rundruf db upgrade failed:\n{done.stderr}")


def backend_count(url: str) -> int:
    """Connections to this database (the server's pool) as PostgreSQL sees them."""
    server, _, name = _plain(url).rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


@dataclass
class Seeded:
    agent_tokens: list[str]
    admin_tokens: dict[int, str]  # tenant index -> tenant admin session token


def seed(url: str, n: int, sampled: Sequence[int]) -> Seeded:
    """N tenants with license, installation and one open command; admins for the sampled."""
    now = datetime.now(UTC)
    agent_tokens = [new_token("rda") for _ in range(n)]
    admin_tokens = {i: new_token("rds") for i in sampled}
    tenants = [uuid.uuid4() for _ in range(n)]
    licenses = [uuid.uuid4() for _ in range(n)]
    rows: list[tuple[Any, list[dict[str, Any]]]] = [
        (Tenant, [{"id": t, "name": f"Bench tenant {i}"} for i, t in enumerate(tenants)]),
        (
            License,
            [
                {
                    "id": licenses[i],
                    "tenant_id": t,
                    "key_hash": hash_token(f"bench-license-{t}"),
                    "key_prefix": "bench",
                    "seats": 1,
                    "valid_until": now + timedelta(days=365),
                }
                for i, t in enumerate(tenants)
            ],
        ),
        (
            Installation,
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": t,
                    "license_id": licenses[i],
                    "hostname": f"agent-{i}",
                    "token_hash": hash_token(agent_tokens[i]),
                    "agent_version": "bench",
                }
                for i, t in enumerate(tenants)
            ],
        ),
        (
            Command,
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": t,
                    "type": HELLO,
                    "payload": {},
                    "status": CommandStatus.PENDING,
                    "created_at": now,
                    "expires_at": now + timedelta(hours=3),
                }
                for t in tenants
            ],
        ),
    ]
    users = {i: uuid.uuid4() for i in sampled}
    rows.append(
        (
            User,
            [
                {
                    "id": users[i],
                    "tenant_id": tenants[i],
                    "email": f"admin{i}@bench.example",
                    "name": f"Admin {i}",
                    "role": Role.TENANT_ADMIN,
                    "password_hash": "no-login",  # signed in through the session below
                }
                for i in sampled
            ],
        )
    )
    rows.append(
        (
            Session,
            [
                {
                    "id": uuid.uuid4(),
                    "user_id": users[i],
                    "token_hash": hash_token(admin_tokens[i]),
                    "expires_at": now + timedelta(hours=3),
                }
                for i in sampled
            ],
        )
    )
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for model, values in rows:
                for start in range(0, len(values), SEED_CHUNK):
                    conn.execute(insert(model), values[start : start + SEED_CHUNK])
    finally:
        engine.dispose()
    return Seeded(agent_tokens, admin_tokens)


# --- clients -------------------------------------------------------------------------------


class Client:
    """One simulated connection: a WebSocket and a reader task noting arrival times."""

    replays = False  # whether `open` waits for the first message after the handshake

    def __init__(self, index: int) -> None:
        self.index = index
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.arrivals: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.ready: asyncio.Future[None] | None = None
        self.problem: str | None = None

    async def open(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(OPEN_TIMEOUT):
            self.ws = await connect(
                url,
                subprotocols=[PROTOCOL],
                ping_interval=None,  # the server pings; the client only answers
                compression=None,
                open_timeout=None,
                close_timeout=2,
                max_size=1 << 20,
                proxy=None,
            )
            await self.handshake(self.ws)
            self.ready = loop.create_future()
            if not self.replays:
                self.ready.set_result(None)
            self.reader = asyncio.create_task(self._read(self.ws))
            await self.ready

    async def handshake(self, ws: ClientConnection) -> None:
        raise NotImplementedError

    async def parse(self, ws: ClientConnection, raw: str | bytes) -> str | None:
        """The key of a message that arrived, or None for protocol traffic."""
        raise NotImplementedError

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                at = time.perf_counter()
                key = await self.parse(ws, raw)
                if key is None:
                    continue
                if self.ready is not None and not self.ready.done():
                    self.ready.set_result(None)
                    continue  # the replayed command that proves the subscription is live
                self.arrivals[key] = at
                waiter = self.waiters.pop(key, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(at)
        except ConnectionClosed as exc:
            self.problem = self.problem or f"closed: {exc}"
        except Exception as exc:  # noted and reported; one bad client must not stop the run
            self.problem = self.problem or f"reader failed: {exc!r}"
        finally:
            if self.problem is None and ws.close_code not in (None, 1000):
                self.problem = f"closed with {ws.close_code}"
            error = ConnectionError(self.problem or "connection closed")
            if self.ready is not None and not self.ready.done():
                self.ready.set_exception(error)
            for waiter in self.waiters.values():
                if not waiter.done():
                    waiter.set_exception(error)

    async def arrival(self, key: str, within: float) -> float:
        if key in self.arrivals:
            return self.arrivals.pop(key)
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[key] = waiter
        try:
            async with asyncio.timeout(within):
                return await waiter
        finally:
            self.waiters.pop(key, None)
            self.arrivals.pop(key, None)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self.reader

    @property
    def live(self) -> bool:
        """Connected, subscribed (replay received) and not closed since."""
        ready = self.ready
        return (
            self.problem is None
            and ready is not None
            and ready.done()
            and not ready.cancelled()
            and ready.exception() is None
        )

    def abort(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            self.ws.transport.abort()


class AgentClient(Client):
    """The real agent's wire protocol (edge_agent.channel), without executing commands."""

    replays = True

    def __init__(self, index: int, token: str) -> None:
        super().__init__(index)
        self.token = token

    async def handshake(self, ws: ClientConnection) -> None:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}}
        await ws.send(json.dumps(init))
        ack = json.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise ConnectionError(f"no connection_ack: {ack}")
        subscribe = {"id": "commands", "type": "subscribe", "payload": {"query": AGENT_COMMANDS}}
        await ws.send(json.dumps(subscribe))

    async def parse(self, ws: ClientConnection, raw: str | bytes) -> str | None:
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "next":
            payload = message.get("payload") or {}
            command = (payload.get("data") or {}).get("agentCommands")
            if payload.get("errors") or not command:
                self.problem = f"next with errors: {payload.get('errors')}"
                return None
            return str(command["id"])
        if kind == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif kind in ("error", "complete"):
            self.problem = f"{kind}: {message}"
            await ws.close()
        return None


class FloorClient(Client):
    async def handshake(self, ws: ClientConnection) -> None:
        await ws.send(f"hello {self.index}")
        if await ws.recv() != "ready":
            raise ConnectionError("the floor server did not answer ready")

    async def parse(self, ws: ClientConnection, raw: str | bytes) -> str | None:
        return raw if isinstance(raw, str) else raw.decode()


async def connect_all(
    clients: Sequence[Client], url: str, batch: int, max_failures: int
) -> tuple[float, list[str]]:
    """Opens the clients batch by batch; returns the seconds taken and the failures."""
    failures: list[str] = []
    started = time.perf_counter()
    for start in range(0, len(clients), batch):
        chunk = clients[start : start + batch]
        results = await asyncio.gather(*(c.open(url) for c in chunk), return_exceptions=True)
        for client, result in zip(chunk, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(f"agent {client.index}: {result!r} {client.problem or ''}")
                client.abort()
        done = start + len(chunk)
        if done % (batch * 4) == 0 or done == len(clients):
            log(f"  {done}/{len(clients)} opened, {len(failures)} failed")
        if len(failures) > max_failures:
            log(f"  stopping: {len(failures)} connections failed")
            break
    return time.perf_counter() - started, failures


async def close_all(clients: Sequence[Client]) -> None:
    for start in range(0, len(clients), CLOSE_BATCH):
        chunk = clients[start : start + CLOSE_BATCH]
        try:
            async with asyncio.timeout(30):
                await asyncio.gather(*(c.close() for c in chunk), return_exceptions=True)
        except TimeoutError:
            for client in chunk:
                client.abort()


# --- measurement ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN without values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class Phase:
    """What one server (ours or the floor) did with N clients."""

    connected: int = 0
    connect_s: float = math.nan
    failures: list[str] = field(default_factory=list)
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    kib_per_conn: float = math.nan
    idle_cpu_pct: float = math.nan
    latencies_ms: list[float] = field(default_factory=list)
    request_ms: list[float] = field(default_factory=list)
    # latency minus the mutation's round trip: how long after its answer the agent had it
    push_ms: list[float] = field(default_factory=list)
    sample_errors: list[str] = field(default_factory=list)
    log_summary: list[tuple[int, str]] = field(default_factory=list)


# A trigger sends the message for sample i to client index and returns (key, t0, request ms).
Trigger = Callable[[int, int], Awaitable[tuple[str, float, float | None]]]


async def sample(
    phase: Phase,
    clients: dict[int, Client],
    targets: Sequence[int],
    trigger: Trigger,
    count: int,
    gap: float,
    offset: int = 0,
    record: bool = True,
) -> None:
    """Sequential samples: one message in flight at a time, round robin over the targets.

    Targets whose connection was lost are skipped; sampling stops after SAMPLING_LIMIT.
    """
    deadline = time.monotonic() + SAMPLING_LIMIT
    for i in range(count):
        if time.monotonic() > deadline:
            phase.sample_errors.append(f"sample {offset + i}: stopped after {SAMPLING_LIMIT} s")
            return
        live = [t for t in targets if clients[t].live]
        if not live:
            phase.sample_errors.append(f"sample {offset + i}: no connected target left")
            return
        index = live[i % len(live)]
        client = clients[index]
        try:
            key, t0, request_ms = await trigger(index, offset + i)
            arrived = await client.arrival(key, SAMPLE_TIMEOUT)
        except Exception as exc:  # noted and reported; the run goes on
            phase.sample_errors.append(f"sample {offset + i} to {index}: {exc!r}")
            continue
        if record:
            phase.latencies_ms.append((arrived - t0) * 1000)
            if request_ms is not None:
                phase.request_ms.append(request_ms)
                phase.push_ms.append(phase.latencies_ms[-1] - request_ms)
        await asyncio.sleep(gap)


async def idle_measure(phase: Phase, pid: int, window: float) -> None:
    """CPU of the server over a window while every client is idle, then its RSS.

    The subscriptions reread the database every SAFETY_POLL (30 s) seconds, so a
    window of 30 s holds one such read per agent: the idle load in steady state.
    """
    gc.collect()
    await asyncio.sleep(SETTLE)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(window)
    phase.idle_cpu_pct = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
    phase.rss_after_kib = rss_kib(pid)


@dataclass
class Options:
    samples: int
    batch: int
    sampled_tenants: int
    idle_window: float
    gap: float
    database_url: str
    redis_url: str
    folder: Path


def sampled_indices(n: int, count: int) -> list[int]:
    step = max(1, n // max(1, count))
    return list(range(0, n, step))[:count]


def server_env(url: str, redis_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDRUF_")}
    env.update(
        PYTHONPATH=str(ROOT),
        RUNDRUF_DATABASE_URL=url,
        RUNDRUF_SECRET_KEY=Fernet.generate_key().decode(),
        RUNDRUF_REDIS_URL=redis_url,
        RUNDRUF_LOG_LEVEL="WARNING",
        RUNDRUF_HOST="127.0.0.1",
        RUNDRUF_PORT=str(port),
        # Every simulated agent connects from 127.0.0.1; the default cap is 50.
        RUNDRUF_WS_MAX_PER_CLIENT="100000",
    )
    return env


async def run_ours(n: int, opts: Options) -> Phase:
    phase = Phase()
    url = f"{opts.database_url}_{n}"
    sampled = sampled_indices(n, opts.sampled_tenants)
    port = free_port()
    env = server_env(url, opts.redis_url, port)
    log(f"N={n}: database {url.rpartition('/')[2]}")
    fresh_database(url)
    server: Process | None = None
    clients: list[AgentClient] = []
    try:
        await asyncio.to_thread(upgrade_database, env)
        t = time.perf_counter()
        seeded = await asyncio.to_thread(seed, url, n, sampled)
        log(f"  seeded {n} tenants in {time.perf_counter() - t:.1f} s")
        server = spawn(f"rundruf-serve-{n}", [*RUNDRUF, "serve"], env, opts.folder)
        await wait_listening(server, port)
        log(f"  rundruf serve pid {server.pid} on 127.0.0.1:{port}, RSS {rss_kib(server.pid)} KiB")
        clients = [AgentClient(i, token) for i, token in enumerate(seeded.agent_tokens)]
        by_index: dict[int, Client] = dict(enumerate(clients))
        ws_url = f"ws://127.0.0.1:{port}/graphql"
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=SAMPLE_TIMEOUT, trust_env=False
        ) as http:

            async def mutate(index: int, i: int) -> tuple[str, float, float | None]:
                headers = {"Authorization": f"Bearer {seeded.admin_tokens[index]}"}
                body = {"query": CREATE_GROUP, "variables": {"name": f"bench group {i}"}}
                t0 = time.perf_counter()
                response = await http.post("/graphql", json=body, headers=headers)
                request_ms = (time.perf_counter() - t0) * 1000
                data = response.json()
                if response.status_code != 200 or data.get("errors"):
                    raise RuntimeError(f"mutation failed: {response.status_code} {data}")
                return str(data["data"]["createGroup"]["id"]), t0, request_ms

            # Warmup: a first batch plus a few commands, so code and pool are in place.
            warm = clients[: min(WARMUP_AGENTS, n)]
            warm_s, warm_fail = await connect_all(warm, ws_url, opts.batch, len(warm))
            warm_targets = [i for i in sampled if i < len(warm)]
            await sample(
                phase,
                by_index,
                warm_targets,
                mutate,
                WARMUP_SAMPLES,
                opts.gap,
                offset=1_000_000,
                record=False,
            )
            await asyncio.sleep(SETTLE)
            gc.collect()
            phase.rss_before_kib = rss_kib(server.pid)
            pool_before = backend_count(url)
            log(
                f"  warmup: {len(warm)} agents, RSS {phase.rss_before_kib} KiB, "
                f"{pool_before} database connections"
            )

            rest = clients[len(warm) :]
            rest_s, failures = await connect_all(rest, ws_url, opts.batch, max(10, n // 20))
            phase.failures = warm_fail + failures
            phase.connect_s = warm_s + rest_s
            phase.connected = sum(c.live for c in clients)
            log(
                f"  {phase.connected}/{n} agents subscribed in {phase.connect_s:.1f} s; "
                f"server fds {open_fds(server.pid)}"
            )
            await idle_measure(phase, server.pid, opts.idle_window)
            new = phase.connected - (len(warm) - len(warm_fail))
            if new > 0:
                phase.kib_per_conn = (phase.rss_after_kib - phase.rss_before_kib) / new
            log(
                f"  idle: RSS {phase.rss_after_kib} KiB ({phase.kib_per_conn:.1f} KiB/agent), "
                f"server CPU {phase.idle_cpu_pct:.0f} %, {backend_count(url)} database "
                f"connections"
            )

            gc.collect()
            gc.freeze()  # no collector pauses in this process while measuring
            live = [i for i in sampled if clients[i].live]
            if live:
                await sample(
                    phase,
                    by_index,
                    live,
                    mutate,
                    WARMUP_SAMPLES,
                    opts.gap,
                    offset=2_000_000,
                    record=False,
                )
                await sample(phase, by_index, live, mutate, opts.samples, opts.gap)
            gc.unfreeze()
            log(
                f"  latency: {len(phase.latencies_ms)} samples, p50 "
                f"{percentile(phase.latencies_ms, 50):.2f} ms, p99 "
                f"{percentile(phase.latencies_ms, 99):.2f} ms; {len(phase.sample_errors)} failed"
            )
            dropped = [f"agent {c.index}: {c.problem}" for c in clients if c.problem]
            if dropped:
                log(f"  {len(dropped)} agents lost their connection, e.g. {dropped[:3]}")
                phase.failures += dropped
            if server.alive():
                log(f"  server RSS after sampling {rss_kib(server.pid)} KiB")
            else:
                log(f"  SERVER EXITED with {server.popen.returncode}")
    finally:
        await close_all(clients)
        if server is not None:
            server.stop()
            phase.log_summary = summarize_output(server)
        drop_database(url)
    return phase


async def run_floor(n: int, opts: Options) -> Phase:
    phase = Phase()
    port = free_port()
    server = spawn(
        f"floor-{n}", [sys.executable, "-c", FLOOR_SERVER, str(port)], dict(os.environ), opts.folder
    )
    clients = [FloorClient(i) for i in range(n)]
    by_index: dict[int, Client] = dict(enumerate(clients))
    sampled = sampled_indices(n, opts.sampled_tenants)
    ws_url = f"ws://127.0.0.1:{port}/"
    control: ClientConnection | None = None
    try:
        await wait_listening(server, port)
        control = await connect(ws_url, ping_interval=None, compression=None, proxy=None)
        await control.send("control")
        channel = control

        async def forward(index: int, i: int) -> tuple[str, float, float | None]:
            key = f"s{i}"
            t0 = time.perf_counter()
            await channel.send(f"{index} {key}")
            return key, t0, None

        warm = clients[: min(WARMUP_AGENTS, n)]
        warm_s, warm_fail = await connect_all(warm, ws_url, opts.batch, len(warm))
        warm_targets = [i for i in sampled if i < len(warm)]
        await sample(
            phase,
            by_index,
            warm_targets,
            forward,
            WARMUP_SAMPLES,
            opts.gap,
            offset=1_000_000,
            record=False,
        )
        await asyncio.sleep(SETTLE)
        phase.rss_before_kib = rss_kib(server.pid)
        rest_s, failures = await connect_all(
            clients[len(warm) :], ws_url, opts.batch, max(10, n // 20)
        )
        phase.failures = warm_fail + failures
        phase.connect_s = warm_s + rest_s
        phase.connected = sum(c.live for c in clients)
        await idle_measure(phase, server.pid, opts.idle_window)
        new = phase.connected - (len(warm) - len(warm_fail))
        if new > 0:
            phase.kib_per_conn = (phase.rss_after_kib - phase.rss_before_kib) / new
        log(
            f"  floor: {phase.connected}/{n} in {phase.connect_s:.1f} s, RSS "
            f"{phase.rss_before_kib} -> {phase.rss_after_kib} KiB "
            f"({phase.kib_per_conn:.1f} KiB/conn), idle CPU {phase.idle_cpu_pct:.0f} %"
        )
        gc.collect()
        gc.freeze()
        live = [i for i in sampled if clients[i].live]
        await sample(
            phase, by_index, live, forward, WARMUP_SAMPLES, opts.gap, offset=2_000_000, record=False
        )
        await sample(phase, by_index, live, forward, opts.samples, opts.gap)
        gc.unfreeze()
        log(
            f"  floor latency: p50 {percentile(phase.latencies_ms, 50):.2f} ms, p99 "
            f"{percentile(phase.latencies_ms, 99):.2f} ms; {len(phase.sample_errors)} failed"
        )
    finally:
        if control is not None:
            await control.close()
        await close_all(clients)
        server.stop()
        phase.log_summary = summarize_output(server)
    return phase


def reasons(problems: Sequence[str], limit: int = 6) -> list[tuple[str, int]]:
    """Problems grouped by their text without the client or sample number."""
    counts = Counter(re.sub(r"^(agent|sample) \d+( to \d+)?: ", "", p)[:200] for p in problems)
    return counts.most_common(limit)


# --- report --------------------------------------------------------------------------------

# (heading, decimals)
COLUMNS = [
    ("agents", 0),
    ("connected", 0),
    ("connect_s", 1),
    ("rss_kib_per_conn", 1),
    ("idle_cpu_pct", 0),
    ("p50_ms", 2),
    ("p99_ms", 2),
    ("mutation_p50_ms", 2),
    ("push_p50_ms", 2),
    ("floor_connect_s", 1),
    ("floor_kib_per_conn", 1),
    ("floor_p50_ms", 2),
    ("floor_p99_ms", 2),
    ("ratio_p99", 2),
    ("ratio_mem", 2),
]


def row(n: int, ours: Phase, floor: Phase) -> list[float]:
    p99 = percentile(ours.latencies_ms, 99)
    floor_p99 = percentile(floor.latencies_ms, 99)
    return [
        n,
        ours.connected,
        ours.connect_s,
        ours.kib_per_conn,
        ours.idle_cpu_pct,
        percentile(ours.latencies_ms, 50),
        p99,
        percentile(ours.request_ms, 50),
        percentile(ours.push_ms, 50),
        floor.connect_s,
        floor.kib_per_conn,
        percentile(floor.latencies_ms, 50),
        floor_p99,
        p99 / floor_p99 if floor_p99 > 0 else math.nan,
        ours.kib_per_conn / floor.kib_per_conn if floor.kib_per_conn > 0 else math.nan,
    ]


def table(rows: Sequence[list[float]]) -> str:
    lines = ["  ".join(f"{name:>7}" for name, _ in COLUMNS)]
    for values in rows:
        cells = [
            f"{'-' if math.isnan(value) else f'{value:.{decimals}f}':>{max(7, len(name))}}"
            for (name, decimals), value in zip(COLUMNS, values, strict=True)
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def verdict(n: int, ours: Phase, floor: Phase) -> str:
    p99 = percentile(ours.latencies_ms, 99)
    floor_p99 = percentile(floor.latencies_ms, 99)
    checks = [
        f"all {n} subscribed: {'yes' if ours.connected == n else 'NO'}",
        f"<= 50 KiB/agent: {'yes' if ours.kib_per_conn <= 50 else 'NO'}",
        f"p99 <= 2x floor: {'yes' if p99 <= 2 * floor_p99 else 'NO'}",
    ]
    if n >= 10_000:
        checks.append(f"p99 < 20 ms: {'yes' if p99 < 20 else 'NO'}")
    more = (
        f"; mutation p99 {percentile(ours.request_ms, 99):.2f} ms, push p99 "
        f"{percentile(ours.push_ms, 99):.2f} ms, latency max "
        f"{max(ours.latencies_ms, default=math.nan):.2f} ms, floor max "
        f"{max(floor.latencies_ms, default=math.nan):.2f} ms"
    )
    return f"N={n}: " + ", ".join(checks) + more


async def guarded(name: str, run: Awaitable[Phase], notes: list[str]) -> Phase:
    """A phase that failed as a whole gives empty figures and a note, not a crash."""
    try:
        return await run
    except Exception as exc:  # reported with the table; the other phases still run
        log(f"{name} failed: {exc!r}")
        notes.append(f"{name} FAILED: {exc!r}"[:400])
        return Phase()


def keep_logs_if_any(folder: Path) -> None:
    if any(f.stat().st_size for f in folder.glob("*.log")):
        log(f"server logs kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500, help="connections opened at once")
    parser.add_argument("--sampled-tenants", type=int, default=50)
    parser.add_argument(
        "--idle-window", type=float, default=30.0, help="seconds of measuring idle server CPU"
    )
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause between samples")
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/rundruf_bench_agents",
        help="base name; the run uses <name>_<N> and drops it after",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args(argv)
    nofile = raise_nofile()
    log(
        f"open-files limit {nofile} (inherited by the servers); {os.cpu_count()} CPUs, load "
        f"average {os.getloadavg()[0]:.2f} (other work on the machine skews latency)"
    )
    if max(args.agents) + 1000 > nofile:
        log(f"warning: {max(args.agents)} agents need more than {nofile} open files")
    rows: list[list[float]] = []
    verdicts: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="rundruf-bench-"))
    notes: list[str] = []
    try:
        opts = Options(
            samples=args.samples,
            batch=args.batch,
            sampled_tenants=args.sampled_tenants,
            idle_window=args.idle_window,
            gap=args.gap_ms / 1000,
            database_url=args.database_url,
            redis_url=args.redis_url,
            folder=folder,
        )
        for n in args.agents:
            ours = await guarded(f"rundruf N={n}", run_ours(n, opts), notes)
            floor = await guarded(f"floor N={n}", run_floor(n, opts), notes)
            for name, phase in (("rundruf", ours), ("floor", floor)):
                for what, problems in (
                    ("connections failed or lost", phase.failures),
                    ("samples failed", phase.sample_errors),
                ):
                    if problems:
                        notes.append(f"{name} N={n}: {len(problems)} {what}:")
                        notes += [f"  {c:>6}x {why}" for why, c in reasons(problems)]
                if phase.log_summary:
                    notes.append(f"{name} N={n}: server log, most frequent records:")
                    notes += [f"  {c:>6}x {text[:160]}" for c, text in phase.log_summary[:6]]
            log(f"load average {os.getloadavg()[0]:.2f}")
            rows.append(row(n, ours, floor))
            verdicts.append(verdict(n, ours, floor))
            log("results so far:\n" + table(rows))
    finally:
        keep_logs_if_any(folder)
    print(table(rows))
    print()
    for line in verdicts + notes:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
