"""What a hostile GraphQL body costs the event loop (issue 14, point 4; review points 1, 2).

The JSON guard (api/http/json_guard.py) runs on the event loop for every body and
frame, before anyone signed in. Prints:

1. per body (256 KiB unless named): the guard as it is, against the former scan
   (one regex for strings, then a Python step per bracket), in ms;
2. on a real `rundruf serve` process (SQLite in a temporary folder): 20 clients
   sending one such body each, over and over, while a signed-in client asks
   `{ me { id } }` every 50 ms; the bodies answered per second and the `me`
   latency p50 and max, against the same probe with no attack.

Run: `.venv/bin/python bench/json_guard.py [--seconds 5] [--clients 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.http import json_guard  # noqa: E402

SIZE = 256 * 1024
BODIES: dict[str, bytes] = {
    "unclosed string, 64 KiB": b"[" * 65 + b'"' + b'\\"' * 32_000,
    "all openers": b"[" * (SIZE - 10),
    "empty lists side by side": b"[]" * (SIZE // 2 - 10),
    "flat list of lists": b'{"query":"{me{id}}","variables":{"a":[' + b"[]," * 87_000 + b"[]]}}",
    "lists 65 deep, side by side": (b"[" * 65 + b"]" * 65 + b",") * (SIZE // 131),
    "lists 64 deep, side by side": b"[" + (b"[" * 63 + b"]" * 63 + b",") * (SIZE // 127) + b"1]",
}

_OLD_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OLD_BRACKET = re.compile(rb"[\[\]{}]")


def former_scan(raw: bytes, stop_above: int = 64) -> int:
    """The depth check before the review (b77759f), for comparison."""
    deepest = level = 0
    for bracket in _OLD_BRACKET.finditer(_OLD_STRING.sub(b'""', raw)):
        if bracket.group() in (b"[", b"{"):
            level += 1
            deepest = max(deepest, level)
            if deepest > stop_above:
                break
        else:
            level -= 1
    return deepest


def best_ms(call: Callable[[], object], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        with contextlib.suppress(ValueError):
            call()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def guard_table() -> None:
    print(f"{'body':32} {'bytes':>8} {'guard ms':>9} {'former scan ms':>15}")
    for name, body in BODIES.items():
        now = best_ms(functools.partial(json_guard.loads, body))
        if name.startswith("unclosed"):
            # The former pattern is quadratic here: 8 KB, times 64 for 64 KB.
            small = body[: 65 + 1 + 2 * 4000]
            before = f"{best_ms(functools.partial(former_scan, small), 1) * 64:.0f} (x64 of 8 KB)"
        else:
            before = f"{best_ms(functools.partial(former_scan, body)):.1f}"
        print(f"{name:32} {len(body):>8} {now:>9.2f} {before:>15}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """`rundruf serve` on SQLite with the test world; its URL and the owner's token."""
    from cryptography.fernet import Fernet

    port = free_port()
    env = {
        **os.environ,
        "RUNDRUF_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "RUNDRUF_SECRET_KEY": Fernet.generate_key().decode(),
        "RUNDRUF_COOKIE_SECURE": "false",
        "RUNDRUF_LOG_LEVEL": "WARNING",
    }
    rundruf = [sys.executable, "-m", "api.cli"]  # this tree's code, wherever it lies
    subprocess.run(  # noqa: S603 - our own argv
        [*rundruf, "db", "upgrade", "head"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    setup = (
        "import asyncio\n"
        "from api.bootstrap import bootstrap\n"
        "from api.settings import load_settings\n"
        "from tests.world import build_world\n"
        "async def main():\n"
        "    rt = bootstrap(load_settings())\n"
        "    print((await build_world(rt)).tokens['owner'])\n"
        "    await rt.db.dispose()\n"
        "asyncio.run(main())\n"
    )
    made = subprocess.run(  # noqa: S603 - our own argv
        [sys.executable, "-c", setup], env=env, cwd=ROOT, check=True, capture_output=True
    )
    token = made.stdout.decode().strip().splitlines()[-1]
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen(  # noqa: S603 - our own argv
        [*rundruf, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(url, json={"query": "{ __typename }"}, timeout=1)
            return server, url, token
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("rundruf serve did not start; see " + str(folder / "serve.log"))


async def probe(c: httpx.AsyncClient, url: str, token: str, stop: asyncio.Event) -> list[float]:
    latencies = []
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        started = time.perf_counter()
        r = await c.post(url, json={"query": "{ me { id } }"}, headers=headers)
        assert r.status_code == 200, r.text
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    return latencies


async def attacker(c: httpx.AsyncClient, url: str, body: bytes, stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):  # a timeout: the server is stuck
            await c.post(url, content=body, headers={"Content-Type": "application/json"})
            sent += 1
    return sent


async def attack(url: str, name: str, clients: int, seconds: float) -> None:
    """The attacking clients (a process of their own, so that their work does not
    delay the probe's client): prints how many bodies were answered."""
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(attacker(c, url, BODIES[name], stop)) for _ in range(clients)]
        await asyncio.sleep(seconds)
        stop.set()
        print(sum([await t for t in tasks]))


async def under_load(url: str, token: str, name: str | None, clients: int, seconds: float) -> str:
    child = None
    if name is not None:
        argv = [sys.executable, __file__, "--attack", url, name, str(clients), str(seconds)]
        child = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    async with httpx.AsyncClient(timeout=120) as c:
        stop = asyncio.Event()
        watch = asyncio.create_task(probe(c, url, token, stop))
        await asyncio.sleep(seconds)
        stop.set()
        latencies = await watch
    sent = 0
    if child is not None:
        out, _ = await child.communicate()
        sent = int(out.decode().split()[-1])
    ms = sorted(x * 1000 for x in latencies)
    return f"{sent / seconds:>9.0f} {statistics.median(ms):>9.1f} {ms[-1]:>9.1f} {len(ms):>6}"


def load_table(clients: int, seconds: float, skip: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="rundruf-bench-") as tmp:
        server, url, token = start_server(Path(tmp))
        try:
            print(f"\n{clients} clients, {seconds:.0f} s each; `me` probed every 50 ms")
            print(f"{'body':32} {'bodies/s':>9} {'me p50':>9} {'me max':>9} {'probes':>6}")
            print(f"{'(none)':32} {asyncio.run(under_load(url, token, None, 0, seconds))}")
            for name in BODIES:
                if any(name.startswith(skipped) for skipped in skip):
                    continue
                figures = asyncio.run(under_load(url, token, name, clients, seconds))
                print(f"{name:32} {figures}")
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:  # stuck in a body (the former guard)
                server.kill()
                server.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--no-server", action="store_true", help="only the guard's own cost")
    parser.add_argument("--skip", action="append", default=[], help="bodies named so")
    parser.add_argument("--attack", nargs=4, metavar=("URL", "BODY", "CLIENTS", "SECONDS"))
    args = parser.parse_args()
    if args.attack:
        url, name, clients, seconds = args.attack
        asyncio.run(attack(url, name, int(clients), float(seconds)))
        return
    guard_table()
    if not args.no_server:
        load_table(args.clients, args.seconds, args.skip)


if __name__ == "__main__":
    main()
