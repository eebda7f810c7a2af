"""The alarm path on real processes: from the job service's 201 to the calls and the history.

    .venv/bin/python bench/alarm.py [--sizes 20 200 1000] [--runs R] [--keep]

One ``rundruf serve`` on a fresh PostgreSQL database (dropped at the end) with
Redis; per group size N a tenant with a tenant admin and a license of N + 10
seats, a SwyxWare simulator state with N users (all logged on, each with an
extension) in the group "Alarm N", a ``rundruf jobservice`` and an enrolled
``rundruf agent run`` (N channels, simulated calls 100x faster). The PBX
credentials are verified and the group converted to a broadcast group through
GraphQL, as the end-to-end tests do. Everything listens on 127.0.0.1.

Each run posts a mode 2 job with the routing token, as the call-routing script
does, and takes the moment its 201 arrived as t0 (``time.time()``; the agent
stamps its times with the same host clock). Times after t0, in milliseconds:

- job taken: the broadcast's startedAt, stamped by the agent when the long
  poll handed it the job (negative when the poll answered before the 201 did);
- first / last call started: min / max over the attempts' startedAt, which the
  agent stamps as it journals a call, just before dialling;
- finished (agent): the broadcast's finishedAt, the agent's stamp after the
  last member confirmed;
- report seen: when this process saw the finished broadcast pushed through the
  ``broadcastUpdated`` subscription (graphql-transport-ws; no polling, so no
  poll granularity): the final report stored, committed and published by the
  server, plus the push's own few milliseconds (Redis, a session check and one
  read of the broadcast row), as a browser showing the history would see it.

Before the next run the job must have left the job service (the agent deletes
it after the server acknowledged the final report). One warm-up run per size is
printed apart and not counted. --runs defaults to 20 runs at N <= 20, 10 at
N <= 200 and 3 above. p99 is nearest-rank: with fewer than 100 runs it is the
maximum. Each broadcast's calls are checked: N attempts, one per member, every
one confirmed on attempt 1.

Prints the table to stdout (progress to stderr), then the targets of the issue
with a verdict: the first call started within 50 ms (p99) of the job being
accepted, and the last of 1,000 calls started within 1 s. Logs and state go
to a temporary folder, kept with --keep and printed when a run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.fernet import Fernet
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import log, percentile  # noqa: E402
from edge_agent.pbx.port import UserState  # noqa: E402
from edge_agent.pbx.sim import SimControl  # noqa: E402
from edge_agent.pbx.sim_state import SimState, StateFile  # noqa: E402
from tests.jobservice.support import AGENT, ROUTING, bearer, job_body  # noqa: E402
from tests.processes import (  # noqa: E402
    RUNDRUF,
    Agent,
    Client,
    Server,
    agent_env,
    clean_env,
    free_port,
    wait_until,
)

PASSWORD = "bench password 123"  # noqa: S105 - a throwaway admin on a throwaway database
PBX = {"host": "swyx.bench.local", "admin_user": "admin", "admin_password": "swyx-pass"}
FIRST_EXTENSION = 1000  # the simulator's default range (200-899) is too small for 1,000
RUN_TIMEOUT = 300.0  # seconds for one broadcast to finish and its job to be deleted
JOB_POLL = 0.02  # seconds between two looks at the job service's pending jobs
FIRST_CALL_TARGET_MS = 50.0
LAST_CALL_TARGET_MS = 1000.0
TARGET_SIZE = 1000
METRICS = (
    ("job taken by the agent", "taken"),
    ("first call started", "first"),
    ("last call started", "last"),
    ("broadcast finished (agent)", "finished"),
    ("final report seen (push)", "seen"),
)
SUBSCRIPTION = "subscription { broadcastUpdated { id status finishedAt } }"
BROADCAST = """query($id: ID!) { broadcast(id: $id) { id status memberCount startedAt finishedAt
  note attempts { memberExtension attemptNo startedAt outcome } } }"""
GROUPS = "{ groups { id name members { name } broadcast { extension } } }"
COMMAND = "query($id: ID!) { command(id: $id) { status error } }"


def default_runs(n: int) -> int:
    return 20 if n <= 20 else 10 if n <= 200 else 3


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    folder: Path
    database_url: str
    server: Server
    platform: Client
    processes: list[Any] = field(default_factory=list)  # everything to stop at the end


def fresh_database(url: str) -> None:
    server, _, name = url.replace("+psycopg", "").rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    server, _, name = url.replace("+psycopg", "").rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_stack(folder: Path, database_url: str, redis_url: str) -> Stack:
    fresh_database(database_url)
    env = clean_env(
        RUNDRUF_DATABASE_URL=database_url,
        RUNDRUF_SECRET_KEY=Fernet.generate_key().decode(),
        RUNDRUF_REDIS_URL=redis_url,
        RUNDRUF_COOKIE_SECURE="false",
        RUNDRUF_LOG_LEVEL="WARNING",
    )
    for argv in (
        ["db", "upgrade"],
        ["admin", "create-platform-admin", "--email", "ops@bench.example", "--password", PASSWORD],
    ):
        subprocess.run([*RUNDRUF, *argv], env=env, check=True, timeout=120, capture_output=True)  # noqa: S603
    server = Server(env).start(folder)
    platform = Client(server.url).login("ops@bench.example", PASSWORD)
    return Stack(folder, database_url, server, platform, [server])


class JobService:
    """`rundruf jobservice` with its data folder and log under `root`."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.log = root / "jobservice.log"
        self.env = clean_env(
            RUNDRUF_JOBSERVICE_PORT=str(self.port),
            RUNDRUF_JOBSERVICE_DATA_DIR=str(root / "jobs"),
            RUNDRUF_JOBSERVICE_AGENT_TOKEN=AGENT,
            RUNDRUF_JOBSERVICE_ROUTING_TOKEN=ROUTING,
            RUNDRUF_JOBSERVICE_LOG_LEVEL="WARNING",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> JobService:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own argv
                [*RUNDRUF, "jobservice"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(self._healthy, 20, f"job service on {self.port}")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"job service exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(self.url + "/health", headers=bearer(AGENT), timeout=1).is_success
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Site:
    n: int
    admin: Client
    jobs: JobService
    agent: Agent
    extension: str  # the broadcast group's agent number


def seed_pbx(state_path: Path, n: int) -> None:
    """N logged-on users with extensions from 1000 in the group "Alarm N".

    One locked write of the state file instead of N `SimControl.add_user` calls
    (each a full rewrite with two fsyncs: 14 s for 1,000); the same `SimState`
    methods, so the same checks.
    """
    SimControl(state_path).create(
        PBX["host"],
        PBX["admin_user"],
        PBX["admin_password"],
        first_extension=FIRST_EXTENSION,
        last_extension=FIRST_EXTENSION + 8999,
    )

    def change(s: SimState) -> None:
        ids = [
            s.add_user(
                f"Mitglied {i:04d}",
                "Bench",
                str(FIRST_EXTENSION + i),
                state=UserState.LOGGED_ON,
            ).id
            for i in range(n)
        ]
        s.add_group(f"Alarm {n}", "Benchmark", ids)

    StateFile(state_path).update(change)


def wait_command(admin: Client, command_id: str, timeout: float = 60) -> None:
    def done() -> dict[str, Any] | None:
        command: dict[str, Any] = admin(COMMAND, id=command_id)["command"]
        return command if command["status"] in ("SUCCEEDED", "FAILED", "EXPIRED") else None

    command = wait_until(done, timeout, f"command {command_id}")
    if command["status"] != "SUCCEEDED":
        raise RuntimeError(f"command {command_id} {command['status']}: {command['error']}")


def new_site(stack: Stack, n: int) -> Site:
    platform, url = stack.platform, stack.server.url
    tenant = platform(
        "mutation($n: String!) { createTenant(input: {name: $n}) { id } }", n=f"Bench {n}"
    )["createTenant"]["id"]
    email = f"it{n}@bench.example"
    platform(
        "mutation($t: ID!, $e: String!, $p: String!) { createUser(input: {tenantId: $t, "
        'email: $e, name: "IT", role: TENANT_ADMIN, password: $p}) { id } }',
        t=tenant,
        e=email,
        p=PASSWORD,
    )
    key = platform(
        "mutation($t: ID!, $s: Int!, $v: DateTime!) { issueLicense(tenantId: $t, seats: $s, "
        "validUntil: $v) { key } }",
        t=tenant,
        s=n + 10,
        v=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
    )["issueLicense"]["key"]
    state = stack.folder / f"site-{n}"
    state.mkdir()
    seed_pbx(state / "swyx-sim.json", n)
    jobs = JobService(state).start()
    stack.processes.append(jobs)
    env = agent_env(
        state,
        RUNDRUF_AGENT_JOBSERVICE_URL=jobs.url,
        RUNDRUF_AGENT_JOBSERVICE_TOKEN=AGENT,
        RUNDRUF_AGENT_CHANNELS=str(n),
        RUNDRUF_AGENT_SIM_TIME_SCALE="0.01",
        RUNDRUF_AGENT_LOG_LEVEL="WARNING",
    )
    agent = Agent(env, state)
    agent.enroll(url, key)
    agent.start()
    stack.processes.append(agent)
    admin = Client(url).login(email, PASSWORD)
    admin(
        "mutation($h: String!, $u: String!, $p: String!) { updatePbxSettings(input: "
        "{host: $h, adminUser: $u, adminPassword: $p}) { settings { host } } }",
        h=PBX["host"],
        u=PBX["admin_user"],
        p=PBX["admin_password"],
    )
    verify = admin("mutation { verifyPbxCredentials { command { id } } }")
    wait_command(admin, verify["verifyPbxCredentials"]["command"]["id"])
    group = next(g for g in admin(GROUPS)["groups"] if g["name"] == f"Alarm {n}")
    if len(group["members"]) != n:
        raise RuntimeError(f"the group has {len(group['members'])} members, not {n}")
    enable = admin("mutation($g: ID!) { enableBroadcast(groupId: $g) { id } }", g=group["id"])
    wait_command(admin, enable["enableBroadcast"]["id"])
    broadcast = next(g for g in admin(GROUPS)["groups"] if g["id"] == group["id"])["broadcast"]
    return Site(n, admin, jobs, agent, broadcast["extension"])


def stop_all(stack: Stack) -> None:
    for process in reversed(stack.processes):
        try:
            process.stop()
        except Exception as exc:  # the others still stop; the database is still dropped
            log(f"stopping {process!r} failed: {exc!r}")


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Run:
    figures: dict[str, float]  # milliseconds after t0, by metric key
    calls: int
    members: int  # distinct extensions called
    all_confirmed_once: bool
    status: str


def _ms(at: str, t0: float) -> float:
    return (datetime.fromisoformat(at).timestamp() - t0) * 1000


class Subscription:
    """The tenant admin's `broadcastUpdated`, each update with the time it arrived."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.updates: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server_url: str, token: str) -> Subscription:
        ws = await connect(
            server_url.replace("http://", "ws://") + "/graphql",
            subprotocols=[Subprotocol("graphql-transport-ws")],
            proxy=None,
        )
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        if json.loads(await ws.recv())["type"] != "connection_ack":
            raise RuntimeError("the subscription was not acknowledged")
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}
        await ws.send(json.dumps(subscribe))
        return cls(ws)

    async def _read(self) -> None:
        async for raw in self.ws:
            at = time.time()
            message = json.loads(raw)
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next":
                await self.updates.put((at, message["payload"]["data"]["broadcastUpdated"]))
            elif message["type"] in ("error", "complete"):
                raise RuntimeError(f"the subscription ended: {message}")

    async def finished(self, done: set[str]) -> tuple[float, dict[str, Any]]:
        """The first update of a broadcast not in `done` that shows it finished."""
        while True:
            get = asyncio.ensure_future(self.updates.get())
            finished, _ = await asyncio.wait({get, self.reader}, return_when="FIRST_COMPLETED")
            if self.reader in finished:
                get.cancel()
                self.reader.result()  # raises what ended the reader
                raise RuntimeError("the subscription closed")
            at, update = get.result()
            if update["finishedAt"] is not None and update["id"] not in done:
                return at, update

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


async def job_deleted(jobs: httpx.AsyncClient) -> None:
    """Returns once the job service has no pending job (the agent deleted it)."""
    while True:
        pending = (await jobs.get("/jobs?wait=0", headers=bearer(AGENT))).json()["jobs"]
        if not pending:
            return
        await asyncio.sleep(JOB_POLL)


async def one_run(
    site: Site,
    jobs: httpx.AsyncClient,
    api: httpx.AsyncClient,
    subscription: Subscription,
    done: set[str],
) -> Run:
    body = job_body(
        f"bench-{uuid.uuid4()}", agentNumber=site.extension, memberStates=None, callerName="Bench"
    )
    async with asyncio.timeout(RUN_TIMEOUT):
        response = await jobs.post("/jobs", json=body, headers=bearer(ROUTING))
        t0 = time.time()
        if response.status_code != 201:
            raise RuntimeError(f"POST /jobs answered {response.status_code}: {response.text}")
        seen, update = await subscription.finished(done)
        done.add(update["id"])
        query = {"query": BROADCAST, "variables": {"id": update["id"]}}
        answer = (await api.post("/graphql", json=query)).json()
        if answer.get("errors"):
            raise RuntimeError(f"broadcast query failed: {answer['errors']}")
        b = answer["data"]["broadcast"]
        await job_deleted(jobs)
    attempts = b["attempts"]
    starts = [_ms(a["startedAt"], t0) for a in attempts if a["startedAt"]]
    extensions = {a["memberExtension"] for a in attempts}
    once = all(a["attemptNo"] == 1 and a["outcome"] == "CONFIRMED" for a in attempts)
    return Run(
        figures={
            "taken": _ms(b["startedAt"], t0),
            "first": min(starts, default=math.nan),
            "last": max(starts, default=math.nan),
            "finished": _ms(b["finishedAt"], t0),
            "seen": (seen - t0) * 1000,
        },
        calls=len(attempts),
        members=len(extensions),
        all_confirmed_once=once and len(extensions) == len(attempts) == b["memberCount"],
        status=b["status"],
    )


async def measure(site: Site, server_url: str, runs: int) -> tuple[Run, list[Run]]:
    """One warm-up run, then `runs` runs, one after the other."""
    token = site.admin.token or ""
    subscription = await Subscription.open(server_url, token)
    done: set[str] = set()
    try:
        async with (
            httpx.AsyncClient(base_url=site.jobs.url, timeout=30, trust_env=False) as jobs,
            httpx.AsyncClient(
                base_url=server_url, headers=bearer(token), timeout=60, trust_env=False
            ) as api,
        ):
            results = []
            for i in range(runs + 1):
                run = await one_run(site, jobs, api, subscription, done)
                log(
                    f"  N={site.n} {'warm-up' if i == 0 else f'run {i}/{runs}'}: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in run.figures.items())
                    + f" ms; {run.calls} calls, {run.status}"
                )
                results.append(run)
    finally:
        await subscription.close()
    return results[0], results[1:]


# --- the report ------------------------------------------------------------------------------


def table(results: dict[int, list[Run]]) -> str:
    lines = [
        f"{'members':>7}  {'runs':>4}  {'ms after the 201 of POST /jobs':<30}"
        f"  {'p50':>8}  {'p99':>8}  {'max':>8}"
    ]
    for n, runs in results.items():
        for i, (label, key) in enumerate(METRICS):
            values = [r.figures[key] for r in runs]
            head = f"{n:>7}  {len(runs):>4}" if i == 0 else " " * 13
            lines.append(
                f"{head}  {label:<30}  {percentile(values, 50):8.1f}  "
                f"{percentile(values, 99):8.1f}  {max(values):8.1f}"
            )
    return "\n".join(lines)


def verdicts(results: dict[int, list[Run]]) -> list[str]:
    lines = ["Targets (issue):"]
    for n, runs in results.items():
        p99 = percentile([r.figures["first"] for r in runs], 99)
        ok = "yes" if p99 <= FIRST_CALL_TARGET_MS else "NO"
        lines.append(
            f"  N={n}: first call started within {FIRST_CALL_TARGET_MS:g} ms (p99): "
            f"{ok} ({p99:.1f} ms)"
        )
    if TARGET_SIZE in results:
        last = [r.figures["last"] for r in results[TARGET_SIZE]]
        ok = "yes" if max(last) <= LAST_CALL_TARGET_MS else "NO"
        lines.append(
            f"  N={TARGET_SIZE}: last call started within {LAST_CALL_TARGET_MS:g} ms: {ok} "
            f"(p99 {percentile(last, 99):.1f} ms, max {max(last):.1f} ms)"
        )
    else:
        lines.append(f"  last of {TARGET_SIZE} calls within 1 s: not measured (no N={TARGET_SIZE})")
    lines.append("Calls per broadcast:")
    for n, runs in results.items():
        calls = sorted({r.calls for r in runs})
        good = all(
            r.calls == r.members == n and r.all_confirmed_once and r.status == "COMPLETED"
            for r in runs
        )
        lines.append(
            f"  N={n}: {len(runs)} broadcasts with {', '.join(map(str, calls))} calls each; "
            + (
                f"each of the {n} members called once and confirmed on attempt 1: yes"
                if good
                else "NOT every member called exactly once and confirmed on attempt 1"
            )
        )
    return lines


def warnings_in(folder: Path) -> list[str]:
    """Log lines of the processes (all run at WARNING: quiet while all is well).

    Stopping a job service whose agent was stopped first logs an ERROR: the
    agent's long poll is still waiting there, and uvicorn cancels it after 5 s.
    """
    lines = []
    for path in sorted(folder.rglob("*.log")):
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if text:
            name = path.relative_to(folder)
            lines.append(f"  {name}: {len(text)} lines, the first: {text[0][:160]}")
    return lines


def print_logs(logs: Sequence[Path], tail: int = 40) -> None:
    for path in logs:
        lines = path.read_text(errors="replace").splitlines()
        print(f"--- {path} (last {tail} of {len(lines)} lines)", file=sys.stderr)
        for line in lines[-tail:]:
            print(line, file=sys.stderr)


async def bench(stack: Stack, sizes: Sequence[int], runs: int | None) -> None:
    results: dict[int, list[Run]] = {}
    warmups: dict[int, Run] = {}
    for n in sizes:
        t = time.monotonic()
        site = await asyncio.to_thread(new_site, stack, n)
        log(f"N={n}: site ready in {time.monotonic() - t:.1f} s, agent number {site.extension}")
        warmups[n], results[n] = await measure(site, stack.server.url, runs or default_runs(n))
        site.agent.stop()
        site.jobs.stop()
        log("results so far:\n" + table(results))
    print(table(results))
    print()
    print(
        "Warm-up runs (not counted): "
        + "; ".join(
            f"N={n} first {w.figures['first']:.1f}, last {w.figures['last']:.1f}, "
            f"seen {w.figures['seen']:.1f} ms"
            for n, w in warmups.items()
        )
    )
    for line in verdicts(results):
        print(line)
    print(
        f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end; "
        "server, job service, agent, PostgreSQL and this process share them."
    )
    noisy = warnings_in(stack.folder)
    if noisy:
        print("Process logs (WARNING and above):")
        for line in noisy:
            print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 200, 1000])
    parser.add_argument("--runs", type=int, help="runs per size (default: 20, 10 or 3 by size)")
    parser.add_argument("--keep", action="store_true", help="keep the folder with logs and state")
    parser.add_argument(
        "--database-url",
        default=f"postgresql+psycopg://postgres@127.0.0.1:5432/rundruf_bench_alarm_{os.getpid()}",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args(argv)
    if any(n < 1 or n > 2000 for n in args.sizes):
        parser.error("sizes must be between 1 and 2000 (the agent's channel limit)")
    folder = Path(tempfile.mkdtemp(prefix="rundruf-bench-alarm-"))
    log(f"logs and state in {folder}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    stack: Stack | None = None
    failed = True
    try:
        stack = start_stack(folder, args.database_url, args.redis_url)
        asyncio.run(bench(stack, args.sizes, args.runs))
        failed = False
    except Exception:
        traceback.print_exc()
    finally:
        if stack is not None:
            stop_all(stack)
        drop_database(args.database_url)
        if failed:
            print_logs(sorted(folder.rglob("*.log")))
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
