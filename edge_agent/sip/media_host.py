"""The address an SDP `c=` line names, as an IP literal, looked up once per offer.

RFC 4566 lets `c=` carry a host name. Handing that name to ``sendto`` made the
socket module resolve it on the event loop for every 20 ms packet (a blocking
``getaddrinfo``); with a resolver that did not answer, one re-INVITE froze every
call and all SIP handling for minutes (issue 15, point 2). So a name is looked up
here once, in a thread of its own, and waited for at most `timeout_s`; whoever
asked refuses the offer (488) when that fails. IP literals never leave the loop.

The threads are daemons: a lookup glibc keeps retrying after our timeout must not
hold up the agent's exit. `max_pending` bounds how many such threads a peer sending
offer after offer with names nobody answers can leave behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable

from edge_agent.sip.errors import SdpError

__all__ = ["Lookup", "MediaHostResolver", "UnresolvableHost", "is_ip_literal", "system_lookup"]

# host, port, family (AF_INET or AF_INET6) -> one address of that family; blocking.
Lookup = Callable[[str, int, int], str]

LOOKUP_TIMEOUT_S = 2.0
MAX_PENDING = 8


class UnresolvableHost(SdpError):
    """Raised when the host name of a `c=` line gives no address in time."""


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def system_lookup(host: str, port: int, family: int) -> str:
    """The first address the system resolver gives for `host` (blocking)."""
    found = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    if not found:
        raise OSError(f"no address for {host}")
    return str(found[0][4][0])


class MediaHostResolver:
    """Looks host names up off the event loop, each at most `timeout_s`."""

    def __init__(
        self,
        lookup: Lookup = system_lookup,
        *,
        timeout_s: float = LOOKUP_TIMEOUT_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._lookup = lookup
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.pending = 0  # lookup threads still running (also those we stopped waiting for)
        self._lock = threading.Lock()

    async def resolve(self, host: str, port: int, family: int) -> str:
        """`host` as an IP literal of `family`; UnresolvableHost when it has none in time."""
        if is_ip_literal(host):
            return host
        with self._lock:
            if self.pending >= self.max_pending:
                raise UnresolvableHost(f"cannot look up {host[:60]}: too many lookups pending")
            self.pending += 1
        loop = asyncio.get_running_loop()
        result: asyncio.Future[str] = loop.create_future()
        thread = threading.Thread(
            target=self._run, args=(loop, result, host, port, family), daemon=True
        )
        thread.start()
        try:
            async with asyncio.timeout(self.timeout_s):
                address = await result
        except TimeoutError:
            raise UnresolvableHost(
                f"no address for {host[:60]} within {self.timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise UnresolvableHost(f"no address for {host[:60]}: {exc}") from None
        if not is_ip_literal(address):
            raise UnresolvableHost(f"the lookup of {host[:60]} gave no IP address")
        return address

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        result: asyncio.Future[str],
        host: str,
        port: int,
        family: int,
    ) -> None:
        outcome: str | BaseException
        try:
            outcome = self._lookup(host, port, family)
        except Exception as exc:  # handed to the loop as the lookup's outcome
            outcome = exc
        finally:
            with self._lock:
                self.pending -= 1
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, result, outcome)


def _settle(result: asyncio.Future[str], outcome: str | BaseException) -> None:
    if result.done():  # timed out and cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        result.set_exception(outcome if isinstance(outcome, OSError) else OSError(str(outcome)))
    else:
        result.set_result(outcome)


# The agent's one resolver: the bound on pending lookups is for the whole process.
default_resolver = MediaHostResolver()
