"""Idle TCP connections from many loopback sources, held by a process of their own.

The connections need a descriptor each on the attacker's side too; in a child process
they do not count against the limit of the process under test (its RLIMIT_NOFILE is
what the tests lower). The child raises its own soft limit to the hard one.

    with TcpFlood(port, count=1100, sources=[f"127.0.0.{i}" for i in range(2, 112)]) as f:
        f.connected          # connections the kernel completed
        f.report()           # {"open": n, "closed_after": [seconds, ...]}

Run alone: ``python -m tests.sip.tcp_flood PORT COUNT SOURCE...``; it prints one JSON line
once every connection was tried, and one per ``report`` line read from stdin; it ends
when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 5.0
PARALLEL_CONNECTS = 200


class _Held:
    """One connection: when it opened and, once the other side closed it, after how long."""

    def __init__(self) -> None:
        self.opened = time.monotonic()
        self.closed_after: float | None = None


class _Tries:
    """Counts finished connects; `all_done` is set when every one was tried."""

    def __init__(self, count: int) -> None:
        self.count, self.done = count, 0
        self.all_done = asyncio.Event()

    def one_more(self) -> None:
        self.done += 1
        if self.done >= self.count:
            self.all_done.set()


async def _hold(
    port: int, source: str, held: list[_Held], gate: asyncio.Semaphore, tries: _Tries
) -> None:
    async with gate:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(
                    HOST, port, local_addr=(source, 0), limit=1024
                )
        except (OSError, TimeoutError):
            tries.one_more()
            return
    one = _Held()
    held.append(one)
    tries.one_more()
    try:
        while await reader.read(1024):
            pass  # the agent's answers, if any
    except OSError:
        pass  # reset: closed too
    one.closed_after = time.monotonic() - one.opened
    writer.close()


def _raise_own_limit() -> None:
    if sys.platform != "linux":
        return
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _main(port: int, count: int, sources: list[str]) -> None:
    _raise_own_limit()
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.strip())
        loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=read_stdin, daemon=True).start()
    held: list[_Held] = []
    gate = asyncio.Semaphore(PARALLEL_CONNECTS)
    tries = _Tries(count)
    started = time.monotonic()
    tasks = [
        asyncio.create_task(_hold(port, sources[i % len(sources)], held, gate, tries))
        for i in range(count)
    ]
    await tries.all_done.wait()
    print(
        json.dumps(
            {
                "connected": len(held),
                "failed": count - len(held),
                "seconds": round(time.monotonic() - started, 3),
            }
        ),
        flush=True,
    )
    while line := await lines.get():
        if line == "report":
            closed = sorted(round(h.closed_after, 3) for h in held if h.closed_after is not None)
            print(json.dumps({"open": len(held) - len(closed), "closed_after": closed}), flush=True)
    for task in tasks:
        task.cancel()


class TcpFlood:
    """The child process, as a context manager: entering returns once all connects ran."""

    def __init__(self, port: int, count: int, sources: list[str], timeout: float = 60.0) -> None:
        self.port, self.count, self.sources, self.timeout = port, count, sources, timeout
        self.connected = 0
        self.failed = 0
        self.seconds = 0.0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "tests.sip.tcp_flood", str(self.port), str(self.count)]
        self._process = subprocess.Popen(
            [*command, *self.sources],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        first = self._line()
        self.connected, self.failed = first["connected"], first["failed"]
        self.seconds = first["seconds"]
        return self

    def _line(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the flood process ended early")
        result: dict[str, Any] = json.loads(line)
        return result

    def report(self) -> dict[str, Any]:
        """How many connections are still open, and after how long each closed one closed."""
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write("report\n")
        self._process.stdin.flush()
        return self._line()

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]))
