"""A port-restricted NAT on loopback, for an agent behind NAT and a PBX in the cloud.

The LAN is 127.0.0.2 (where the agent binds), the NAT's public address 127.0.0.3, the
cloud (SIPp, baresip) 127.0.0.1. Like a home router (RFC 4787's "address and port-
dependent filtering"):

- a datagram from the LAN leaves from a mapping of its source, a port of 127.0.0.3
  (the first one `first_public_port`, known before anything is sent, so that a test
  can tell SIPp; the others the kernel's), never from 127.0.0.2;
- a datagram to a mapping gets in only from an address and port that mapping has sent
  to; everything else is dropped and counted (`dropped`);
- a mapping without outbound traffic for `idle_s` is forgotten (RFC 4787 REQ-6: only
  outbound traffic refreshes it); the next datagram from that source gets a new one.

One loopback cannot route the agent's packets through a relay by itself: all of
127/8 is this host. So the LAN reaches a cloud port p at 127.0.0.4:p (`expose(p)`),
which the relay owns and forwards from the mapping to 127.0.0.1:p; a datagram that
gets in comes to the agent from 127.0.0.4:p. What the cloud writes into its messages
must name 127.0.0.4 where the agent sends to it (an SDP's c=), and what the agent
sees as a request's source is 127.0.0.4: both are this emulation's, not the NAT's.

Every datagram through it is kept (`passed`), to read what went out and what came in.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Self

Address = tuple[str, int]

LAN = "127.0.0.2"
PUBLIC = "127.0.0.3"
CLOUD = "127.0.0.1"
CLOUD_SEEN_FROM_LAN = "127.0.0.4"


@dataclass
class Mapping:
    inside: Address  # the LAN source
    sock: socket.socket  # bound to PUBLIC:port
    allowed: set[Address] = field(default_factory=set)  # cloud addresses it has sent to
    last_out: float = 0.0

    @property
    def public(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)


@dataclass(frozen=True)
class Passed:
    """A datagram the NAT let through: out (LAN to cloud) or in (cloud to LAN)."""

    direction: str  # "out" or "in"
    inside: Address
    public: Address
    cloud: Address
    data: bytes


class PortRestrictedNat:
    def __init__(self, idle_s: float = 30.0) -> None:
        self.idle_s = idle_s
        self.passed: list[Passed] = []
        self.dropped: list[tuple[Address, Address, bytes]] = []  # (from, to, data)
        self._selector = selectors.DefaultSelector()
        self._views: dict[int, socket.socket] = {}  # cloud port -> its LAN-side socket
        self._mappings: dict[Address, Mapping] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reserved: socket.socket | None = self._udp(PUBLIC, 0)
        self.first_public_port = int(self._reserved.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="nat", daemon=True)

    @staticmethod
    def _udp(host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        sock.setblocking(False)
        return sock

    def expose(self, cloud_port: int) -> Address:
        """Where the LAN reaches 127.0.0.1:`cloud_port`: 127.0.0.4, same port."""
        sock = self._udp(CLOUD_SEEN_FROM_LAN, cloud_port)
        with self._lock:
            self._views[cloud_port] = sock
            self._selector.register(sock, selectors.EVENT_READ, ("view", cloud_port))
        return CLOUD_SEEN_FROM_LAN, cloud_port

    def mapping_of(self, inside: Address) -> Address | None:
        """The public address the LAN source `inside` has now, if any."""
        with self._lock:
            found = self._mappings.get(inside)
            return found.public if found is not None else None

    def went_out(self, cloud: Address) -> list[Passed]:
        with self._lock:
            return [p for p in self.passed if p.direction == "out" and p.cloud == cloud]

    def came_in(self, cloud: Address) -> list[Passed]:
        with self._lock:
            return [p for p in self.passed if p.direction == "in" and p.cloud == cloud]

    # ------------------------------------------------------------------ the relay

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                kind, what = key.data
                while True:
                    try:
                        data, source = key.fileobj.recvfrom(65536)  # type: ignore[union-attr]
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break  # an ICMP error for an earlier send: like a lost datagram
                    source = (str(source[0]), int(source[1]))
                    if kind == "view":
                        self._outbound(data, source, what)
                    else:
                        self._inbound(data, source, what)
            self._forget_idle()

    def _outbound(self, data: bytes, source: Address, cloud_port: int) -> None:
        if source[0] != LAN:
            self.dropped.append((source, (CLOUD_SEEN_FROM_LAN, cloud_port), data))
            return
        cloud = (CLOUD, cloud_port)
        with self._lock:
            mapping = self._mappings.get(source)
            if mapping is None:
                sock, self._reserved = self._reserved or self._udp(PUBLIC, 0), None
                mapping = self._mappings[source] = Mapping(source, sock)
                self._selector.register(sock, selectors.EVENT_READ, ("public", source))
            mapping.allowed.add(cloud)
            mapping.last_out = time.monotonic()
            self.passed.append(Passed("out", source, mapping.public, cloud, data))
        with contextlib.suppress(OSError):
            mapping.sock.sendto(data, cloud)

    def _inbound(self, data: bytes, source: Address, inside: Address) -> None:
        with self._lock:
            mapping = self._mappings.get(inside)
            view = self._views.get(source[1]) if source[0] == CLOUD else None
            if mapping is None or source not in mapping.allowed or view is None:
                public = mapping.public if mapping is not None else ("", 0)
                self.dropped.append((source, public, data))
                return
            self.passed.append(Passed("in", inside, mapping.public, source, data))
        with contextlib.suppress(OSError):
            view.sendto(data, inside)

    def _forget_idle(self) -> None:
        cutoff = time.monotonic() - self.idle_s
        with self._lock:
            for inside, mapping in list(self._mappings.items()):
                if mapping.last_out < cutoff:
                    del self._mappings[inside]
                    self._selector.unregister(mapping.sock)
                    mapping.sock.close()

    # ------------------------------------------------------------------ lifetime

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        with self._lock:
            sockets = [*self._views.values(), *(m.sock for m in self._mappings.values())]
            if self._reserved is not None:
                sockets.append(self._reserved)
        for sock in sockets:
            sock.close()
        self._selector.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
