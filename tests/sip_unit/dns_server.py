"""A DNS server on loopback that reads queries and never answers, and a query to it.

For the tests of issue 15, point 2: a resolver that does not answer must not freeze
the event loop. `query` is what a blocking lookup does (one A query over UDP, then
wait); tests hand it to `MediaHostResolver` as its lookup.
"""

from __future__ import annotations

import socket
import struct
import threading


class SilentDnsServer:
    """Counts the queries it gets on (host, port) and answers none."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.address: tuple[str, int] = self.sock.getsockname()
        self.names: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, _ = self.sock.recvfrom(4096)
            except OSError:  # closed
                return
            self.names.append(_question(data))

    def close(self) -> None:
        self.sock.close()


def _question(data: bytes) -> str:
    """The name asked for in a query (RFC 1035 4.1.2), labels joined by dots."""
    labels, at = [], 12
    while at < len(data) and data[at]:
        size = data[at]
        labels.append(data[at + 1 : at + 1 + size].decode("ascii", "replace"))
        at += 1 + size
    return ".".join(labels)


def query(server: tuple[str, int], host: str, wait_s: float = 30.0) -> str:
    """Asks `server` for the A record of `host` and waits for the answer (blocking)."""
    question = b"".join(bytes([len(label)]) + label.encode() for label in host.split("."))
    packet = struct.pack("!HHHHHH", 0x1D5, 0x0100, 1, 0, 0, 0) + question + b"\0\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait_s)
        sock.sendto(packet, server)
        sock.recvfrom(4096)  # never comes: a timeout error after wait_s
    raise OSError(f"no address for {host}")
