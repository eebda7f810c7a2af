"""The SIP stream listener, watched: listens again when its socket closes under it.

On Windows' proactor loop an accept that fails (a client resetting during AcceptEx,
ERROR_NETNAME_DELETED) closes the listening socket for good (CPython gh-93821): a
connect-and-reset storm could end the agent's TCP listening. Every `CHECK_S` the
watchdog looks whether a socket of the server is closed (its fileno is -1) and then
listens again on the same address and port; a failure to (the port taken meanwhile)
is logged, limited, and tried again at the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from edge_agent.sip.log_limit import LogLimiter

log = logging.getLogger(__name__)

CHECK_S = 1.0


class Listener:
    """`loop.create_server(factory, host, port)`, listened again when it closes."""

    def __init__(
        self, factory: Callable[[], asyncio.Protocol], host: str, check_s: float = CHECK_S
    ) -> None:
        self.factory = factory
        self.host = host
        self.port = 0
        self.check_s = check_s
        self.server: asyncio.Server | None = None
        self.relistened = 0  # for tests and the log
        self._log = LogLimiter(log)
        self._timer: asyncio.TimerHandle | None = None
        self._again: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.factory, self.host, port)
        self.port = int(self.server.sockets[0].getsockname()[1])
        self._timer = loop.call_later(self.check_s, self._check)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def _check(self) -> None:
        self._timer = None
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        server = self.server
        if server is not None and self._again is None and _lost_a_socket(server):
            self._again = loop.create_task(self._listen_again(server))
        self._timer = loop.call_later(self.check_s, self._check)

    async def _listen_again(self, old: asyncio.Server) -> None:
        try:
            with contextlib.suppress(OSError, ValueError):  # its socket is gone already
                old.close()
            loop = asyncio.get_running_loop()
            server = await loop.create_server(self.factory, self.host, self.port)
        except OSError as exc:
            self._log.log(
                logging.ERROR,
                "listen-again-failed",
                "the SIP listener on %s:%d closed and cannot listen again yet: %r",
                self.host,
                self.port,
                exc,
            )
            return
        finally:
            self._again = None
        if self._closed:
            server.close()
            return
        self.server = server
        self.relistened += 1
        self._log.log(
            logging.WARNING,
            "listen-again",
            "the SIP listener on %s:%d had closed (CPython gh-93821): listening again",
            self.host,
            self.port,
        )

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._again is not None:
            self._again.cancel()
        if self.server is not None:
            with contextlib.suppress(OSError, ValueError):
                self.server.close()
        self._log.flush()


def _lost_a_socket(server: asyncio.Server) -> bool:
    return any(sock.fileno() == -1 for sock in server.sockets)
