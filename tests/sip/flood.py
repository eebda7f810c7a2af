"""A stranger flooding a UDP port (issue 15, point 4): its own process, so that its work
never counts as ours.

    with SipFlood(("127.0.0.1", port), size=65_000, rate=200):
        ...  # the agent under attack
    flood.sent  # datagrams sent

Shapes (`shape`), each `size` bytes, every datagram a new Call-ID and branch so that
nothing is answered from a cache:

- ``headers``: an INVITE whose head is `size` bytes of short Contact lines, the costliest
  for a parser (each one is a name-addr to parse);
- ``body``: a small well-formed INVITE head with a body filling `size`;
- ``junk``: random bytes;
- ``rtp``: RTP version 2 packets, payload type 101 (an RFC 4733 "1", end bit set), for a
  call's media port.

Run as a script (``python tests/sip/flood.py HOST PORT SIZE RATE SHAPE``), it sends at
`rate` datagrams per second on an absolute schedule until SIGTERM, then prints how many
it sent. Loopback only, as every test peer here.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

SHAPES = ("headers", "body", "junk", "rtp")
Address = tuple[str, int]


def datagram(shape: str, size: int, number: int, to: Address) -> bytes:
    """The `number`th datagram of a flood of `shape`, `size` bytes long."""
    if shape == "junk":
        return os.urandom(size)
    if shape == "rtp":
        header = struct.pack("!BBHII", 0x80, 101, number & 0xFFFF, 8000, 0x0BAD0BAD)
        event = struct.pack("!BBH", 1, 0x80 | 10, 800)
        return (header + event).ljust(max(size, 16), b"\0")
    host, port = to
    head = (
        f"INVITE sip:Rundruf@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-flood-{number:010d}\r\n"
        f"From: <sip:stranger@127.0.0.1>;tag=f{number:010d}\r\n"
        f"To: <sip:Rundruf@{host}>\r\nCall-ID: flood-{number:010d}@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
    ).encode()
    if shape == "body":
        length = max(0, size - len(head) - len(b"Content-Length: 00000\r\n\r\n"))
        return head + b"Content-Length: %05d\r\n\r\n" % length + b"v" * length
    line = b"Contact: <sip:stranger@127.0.0.1:5999;transport=udp>;expires=60\r\n"
    tail = b"Content-Length: 0\r\n\r\n"
    lines = max(0, (size - len(head) - len(tail)) // len(line))
    filled = head + line * lines
    pad = size - len(filled) - len(tail)
    if pad >= len(b"X: \r\n"):
        filled += b"X: " + b"p" * (pad - len(b"X: \r\n")) + b"\r\n"
    return filled + tail


def run(host: str, port: int, size: int, rate: float, shape: str) -> None:
    """The flood process: sends until SIGTERM, then prints the count."""
    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    to = (host, port)
    # Built beforehand (a few, cycled with new numbers where they matter) so that the
    # rate holds even for junk, whose randomness would otherwise cost the sender.
    junk = [datagram("junk", size, n, to) for n in range(8)] if shape == "junk" else []
    sent = 0
    start = time.monotonic()
    print("ready", flush=True)
    while not stop:
        data = junk[sent % 8] if junk else datagram(shape, size, sent, to)
        try:
            sock.sendto(data, to)
            sent += 1
        except OSError:
            pass  # a full buffer or no listener (ICMP): the flood goes on
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(sent, flush=True)


class SipFlood:
    """The flood as a child process; `sent` once stopped (the `with` block ends)."""

    def __init__(
        self, to: Address, *, size: int = 65_000, rate: float = 200.0, shape: str = "headers"
    ) -> None:
        if shape not in SHAPES:
            raise ValueError(f"shape is one of {SHAPES}")
        self.to, self.size, self.rate, self.shape = to, size, rate, shape
        self.sent = 0
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        host, port = self.to
        command = [sys.executable, __file__, host, str(port), str(self.size)]
        command += [f"{self.rate:g}", self.shape]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the flood process did not start")
        return self

    def stop(self) -> int:
        process, self._process = self._process, None
        if process is None:
            return self.sent
        process.terminate()
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate(timeout=10)
        lines = out.split()
        self.sent = int(lines[-1]) if lines and lines[-1].isdigit() else 0
        return self.sent

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
    if len(sys.argv) != 6 or sys.argv[5] not in SHAPES:
        sys.exit(f"usage: {Path(__file__).name} HOST PORT SIZE RATE {{{','.join(SHAPES)}}}")
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
