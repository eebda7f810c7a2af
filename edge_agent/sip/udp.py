"""A bound UDP socket read by the event loop, on Linux's loop and on Windows' alike.

Two ways, chosen once per socket by `platforms.loop_has_readers(loop)` (a test
patches it to run the Windows way here):

- a selector loop (Linux): a reader callback drains up to `batch` datagrams per
  wake-up. asyncio's own datagram transport reads one per loop pass, which lost
  answers when hundreds of members picked up at once (see transport.DRAIN_BATCH);
  with `budget_s` it also stops once that much time went on them, and the rest waits
  for the next pass, after the RTP pacer's turn (a flood must not hold it up);
- Windows' proactor loop, which the agent keeps for its PowerShell subprocesses
  and which has no ``add_reader``: asyncio's datagram endpoint on the same socket.

Sending is a plain ``sendto`` until the endpoint is up (nothing waits on the
socket yet), then the transport's. docs/decisions/windows-portability.md says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from edge_agent import platforms

log = logging.getLogger(__name__)

Address = tuple[str, int]
OnDatagram = Callable[[bytes, Address], None]

# WSAIoctl codes (mstcpip.h): report an ICMP "port unreachable" / "TTL expired" for an
# earlier send as an error of the next receive. Python 3.11's proactor datagram
# transport stops reading for good after such an error (CPython gh-91227, gh-127057).
SIO_UDP_CONNRESET = 0x9800000C
SIO_UDP_NETRESET = 0x9800000F
MAX_DATAGRAM = 65536  # a UDP datagram's largest size: SIP messages


class UdpSocket:
    """`sock` (bound, non-blocking) read into `on_datagram(data, address)` until `close`."""

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: OnDatagram,
        *,
        batch: int,
        max_size: int = MAX_DATAGRAM,
        budget_s: float | None = None,
    ) -> None:
        self.sock = sock
        # The largest datagram read; the proactor keeps a buffer this big per socket.
        self.max_size = max_size
        self._on_datagram = on_datagram
        self._budget_s = budget_s
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._transport: asyncio.DatagramTransport | None = None
        self._opening: asyncio.Task[Any] | None = None
        self._stop_reading: Callable[[], object] | None = None
        if platforms.on_windows():
            ignore_icmp_errors(sock)
        if platforms.loop_has_readers(self._loop):
            self._loop.add_reader(sock.fileno(), self._drain, batch)
            self._stop_reading = lambda: self._loop.remove_reader(sock.fileno())
        else:
            self._opening = self._loop.create_task(
                self._loop.create_datagram_endpoint(lambda: _Endpoint(self), sock=sock)
            )
            self._opening.add_done_callback(self._opened)

    @property
    def via_endpoint(self) -> bool:
        """True when read by an asyncio datagram endpoint (a loop without readers)."""
        return self._stop_reading is None

    async def ready(self) -> None:
        """Returns once datagrams are read (at once on a selector loop)."""
        if self._opening is not None:
            await asyncio.shield(self._opening)

    def sendto(self, data: bytes, address: Address) -> None:
        """Sends one datagram; OSError (a full buffer, say) is the caller's to count."""
        transport = self._transport
        if transport is not None:
            transport.sendto(data, address)
        elif not self._closed:
            self.sock.sendto(data, address)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stop_reading is not None:
            with contextlib.suppress(RuntimeError, ValueError):  # the loop may be closed
                self._stop_reading()
            self.sock.close()
        elif self._transport is not None:
            self._transport.close()  # closes the socket
        elif self._opening is not None:
            self._opening.cancel()  # `_opened` closes the socket

    def _drain(self, batch: int) -> None:
        budget = self._budget_s
        until = None if budget is None else time.perf_counter() + budget
        for _ in range(batch):
            try:
                data, address = self.sock.recvfrom(self.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for an earlier send, say
                log.debug("UDP receive error: %r", exc)
                return
            self._on_datagram(data, (str(address[0]), int(address[1])))
            if until is not None and time.perf_counter() > until:
                return  # the socket stays readable: the loop calls again after the others

    def _opened(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                log.error("reading UDP port %s failed: %r", self._port(), task.exception())
            self._closed = True
            self.sock.close()
        elif self._closed and self._transport is not None:
            self._transport.close()

    def _port(self) -> int | str:
        try:
            return int(self.sock.getsockname()[1])
        except OSError:
            return "?"


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpSocket) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance(asyncio.DatagramTransport): the selector loop's is not one (3.11).
        transport = cast(asyncio.DatagramTransport, transport)
        # Runs before the transport's first read: the proactor transport sizes each
        # receive buffer by max_size (256 KiB by default: 128 MB for 500 calls' RTP
        # sockets); each use says what it needs (SIP 64 KiB, RTP 2 KiB).
        if hasattr(transport, "max_size"):
            transport.max_size = self.owner.max_size
        self.owner._transport = transport
        if self.owner._closed:
            transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.owner._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error on port %s: %r", self.owner._port(), exc)


def ignore_icmp_errors(sock: socket.socket) -> None:
    """Windows: no receive error for an ICMP answer to an earlier send (see above); a
    member's phone that hung up must not make the agent's socket deaf."""
    ws2_32 = _ws2_32()
    for code in (SIO_UDP_CONNRESET, SIO_UDP_NETRESET):
        off = ctypes.c_uint32(0)
        returned = ctypes.c_uint32(0)
        failed = ws2_32.WSAIoctl(
            ctypes.c_size_t(sock.fileno()),
            ctypes.c_uint32(code),
            ctypes.byref(off),
            ctypes.c_uint32(ctypes.sizeof(off)),
            None,
            ctypes.c_uint32(0),
            ctypes.byref(returned),
            None,
            None,
        )
        if failed:  # SOCKET_ERROR (-1): the reason is WSAGetLastError's
            log.warning(
                "WSAIoctl(%#x) on a UDP socket failed: WSA error %d", code, ws2_32.WSAGetLastError()
            )


@functools.cache
def _ws2_32() -> Any:
    """Windows' socket library, loaded once for every socket. Asks ctypes, not the platform
    check: a test that patches that without putting a fake here fails here."""
    load = getattr(ctypes, "WinDLL", None)
    if load is None:
        raise OSError("ws2_32.dll is a part of Windows")
    return load("ws2_32")
