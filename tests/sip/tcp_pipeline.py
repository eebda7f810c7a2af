"""A stranger pipelining valid requests over TCP as fast as it can (issue 15, review of
point 5): its own process, so that its work never counts as ours.

    with TcpPipeline(("127.0.0.1", port), source="127.0.0.50", connections=8) as flood:
        ...  # the agent under attack
    flood.sent, flood.answers  # requests written, answers read

Each connection writes `batch` small OPTIONS at once (a new Call-ID and branch each, so
nothing is answered from a cache), waits until the kernel took them, and again; it
reads every answer (so it is never closed for leaving them unread). A connection the
agent closes is opened again. Run as a script (``python tests/sip/tcp_pipeline.py HOST
PORT SOURCE CONNECTIONS BATCH``) it prints "ready" once connected and, at SIGTERM, one
line "SENT ANSWERS". Loopback only, as every test peer here.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Self

Address = tuple[str, int]


def options(number: int, host: str) -> bytes:
    return (
        f"OPTIONS sip:Rundruf@{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 10.9.9.9:5060;branch=z9hG4bK-pipe{number}\r\n"
        f"From: <sip:a@{host}>;tag=a{number}\r\nTo: <sip:Rundruf@{host}>\r\n"
        f"Call-ID: pipe-{number}@x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class _Count:
    sent = 0
    answers = 0


async def _read(reader: asyncio.StreamReader, count: _Count) -> None:
    while data := await reader.read(262_144):
        count.answers += data.count(b"SIP/2.0 ")


async def _connection(
    host: str, port: int, source: str, batch: int, first: int, count: _Count
) -> None:
    number = first
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            await asyncio.sleep(0.05)
            continue
        reading = asyncio.create_task(_read(reader, count))
        try:
            while not reading.done():
                writer.write(b"".join(options(number + n, host) for n in range(batch)))
                number += batch
                count.sent += batch
                await writer.drain()
        except OSError:
            pass
        finally:
            reading.cancel()
            writer.close()


async def _run(host: str, port: int, source: str, connections: int, batch: int) -> None:
    count = _Count()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [
        asyncio.create_task(_connection(host, port, source, batch, n * 100_000_000, count))
        for n in range(connections)
    ]
    print("ready", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(count.sent, count.answers, flush=True)


class TcpPipeline:
    """The flood as a child process; `sent` and `answers` once stopped."""

    def __init__(
        self, to: Address, *, source: str = "127.0.0.50", connections: int = 8, batch: int = 200
    ) -> None:
        self.to, self.source, self.connections, self.batch = to, source, connections, batch
        self.sent = self.answers = 0
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        host, port = self.to
        command = [sys.executable, __file__, host, str(port), self.source]
        command += [str(self.connections), str(self.batch)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the flood process did not start")
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate(timeout=10)
        figures = out.split()[-2:]
        if len(figures) == 2 and all(f.isdigit() for f in figures):
            self.sent, self.answers = int(figures[0]), int(figures[1])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(f"usage: {Path(__file__).name} HOST PORT SOURCE CONNECTIONS BATCH")
    host, port, source, connections, batch = sys.argv[1:]
    asyncio.run(_run(host, int(port), source, int(connections), int(batch)))
