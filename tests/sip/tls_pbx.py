"""A TLS "PBX" of the test's own on loopback whose connections the test can break.

`RingingPbx(certificate)` serves SIP over TLS (a thread per connection, like
tls_bed.TlsPeer): it registers whatever REGISTERs (200, the Contact granted), answers
an INVITE with 100 and 180 and lets it ring until its CANCEL (200, then 487), answers
BYE, INFO and OPTIONS with 200. It keeps every request with the index of the connection
it came on, and can break a connection the ways a PBX, a firewall or an attacker on the
path would: a TLS record of garbage or of a forbidden size written under TLS
(`send_raw`), a reset (`reset`), or going away altogether (`close`; a new one on the
same port comes back, `port=`).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field

from edge_agent.sip.message import Request, Response, new_tag, parse_stream, response_to
from tests.sip.bed import HOST
from tests.sip.lifetime import Closed
from tests.sip.tls_bed import Pem


@dataclass
class Connection:
    raw: socket.socket  # the same socket as under `tls`: bytes written here bypass TLS
    tls: ssl.SSLSocket
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, data: bytes) -> None:
        with self.lock, contextlib.suppress(OSError):
            self.tls.sendall(data)


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic()
    connection: int  # index into RingingPbx.connections
    request: Request


class RingingPbx(Closed):
    def __init__(self, certificate: Pem, *, port: int = 0) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(certificate.cert), str(certificate.key))
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, port))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.connections: list[Connection] = []
        self.arrivals: list[Arrival] = []
        self.responses: list[Response] = []  # to requests the test sent (`send`)
        self._ringing: dict[str, tuple[Request, str]] = {}  # INVITEs by branch, their tag
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    # ------------------------------------------------------------ what came

    def requests(self, method: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.request.method == method]

    # ------------------------------------------------------------ breaking things

    def send(self, data: bytes, index: int = -1) -> None:
        """Writes `data` under TLS on a connection (a request of the PBX's own: an INVITE
        to the agent; its answers land in `responses`)."""
        self.connections[index].send(data)

    def send_raw(self, data: bytes, index: int = -1) -> None:
        """Writes `data` on the TCP connection under TLS (a record TLS never made)."""
        self.connections[index].raw.sendall(data)

    def reset(self, index: int = -1) -> None:
        """Aborts the connection with a TCP reset, as a rebooting PBX or a firewall does."""
        connection = self.connections[index]
        with contextlib.suppress(OSError):
            connection.raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for sock in (connection.raw, connection.tls):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """Stops listening and resets every connection (the PBX is gone)."""
        self._stop.set()
        self._listener.close()
        for index in range(len(self.connections)):
            self.reset(index)
        for thread in self._threads:
            thread.join(2)

    # ------------------------------------------------------------ serving

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        raw = conn.dup()
        try:
            tls = self._context.wrap_socket(conn, server_side=True)
        except OSError:
            raw.close()
            return
        tls.settimeout(0.1)
        connection = Connection(raw, tls)
        self.connections.append(connection)
        index = len(self.connections) - 1
        buffer = b""
        while not self._stop.is_set():
            try:
                data = tls.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data
            while True:
                buffer = buffer.lstrip(b"\r\n")  # keep-alives
                message, buffer = parse_stream(buffer)
                if message is None:
                    break
                if isinstance(message, Request):
                    self.arrivals.append(Arrival(time.monotonic(), index, message))
                    for answer in self._answers(message):
                        connection.send(answer)
                else:
                    self.responses.append(message)

    def _answers(self, request: Request) -> list[bytes]:
        method = request.method
        if method == "REGISTER":
            ok = response_to(request, 200, "OK", new_tag())
            ok.headers.add("Contact", f"{request.headers.get('Contact')};expires=300")
            return [bytes(ok)]
        if method == "INVITE":
            tag = new_tag()
            self._ringing[request.branch] = (request, tag)
            trying = response_to(request, 100, "Trying")
            return [bytes(trying), bytes(response_to(request, 180, "Ringing", tag))]
        if method == "CANCEL":
            answers = [bytes(response_to(request, 200, "OK"))]
            ringing = self._ringing.pop(request.branch, None)
            if ringing is not None:  # on the INVITE's own connection, if it is still there
                answers.append(
                    bytes(response_to(ringing[0], 487, "Request Terminated", ringing[1]))
                )
            return answers
        if method == "ACK":
            return []
        return [bytes(response_to(request, 200, "OK"))]
