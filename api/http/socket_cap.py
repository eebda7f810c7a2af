"""How many WebSockets one client address may hold, in one process.

Signed-in sockets count against ``ws_max_per_client`` (RUNDRUF_WS_MAX_PER_CLIENT).
A socket that has not yet signed in holds one of a small pre-sign-in budget per
address instead; when that is full, the newest socket takes the place of the
oldest waiting one, which closes with 4408. So sockets that never sign in,
reopened again and again from an agent's address (behind one NAT, or from a
neighbour on the same /64), neither lock the agent out nor take the places of
signed-in sockets: they only push each other out. Squatters that reconnect
faster than a client can send connection_init could still push that client out,
so a handshake that already bears a valid token (the agent's Authorization
header) or session cookie (the website) is counted as signed in at once and
never pushed out. An IPv6 client is counted by its /64, which one host usually
owns whole.

An agent's signed-in sockets do not count against its address at all but
against its installation (``AGENT_SOCKETS_PER_INSTALLATION``): fifty browser
tabs behind the agent's NAT, or any account holder on that address, filled the
address's places and locked the agent out, and with it every alarm. A user's
socket never takes an agent's place, and an agent's never a user's.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from itertools import count
from typing import TypeVar
from uuid import UUID

log = logging.getLogger(__name__)

# Sockets of one address between the handshake and connection_init. A client
# sends connection_init right after the handshake; 8 covers a site whose agent
# and a few browsers connect at the same moment.
PRE_SIGN_IN_PER_CLIENT = 8
CLOSE_PUSHED_OUT = 4408
# Signed-in sockets of one installation: the agent holds one; a reconnect may
# overlap the old socket until the server notices it is gone.
AGENT_SOCKETS_PER_INSTALLATION = 4

Evict = Callable[[], Awaitable[None]]
K = TypeVar("K")


def client_key(host: str | None) -> str:
    """The address a socket counts against: IPv4 as it is, IPv6 by its /64."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a Unix socket path or a proxy's name
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimitedLog:
    """One line per ``every`` seconds and kind at most; the next line says how
    many were left out, so a flood of refusals cannot flood the log."""

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self.logger = logger
        self.every = every
        self._last: dict[str, float] = {}
        self._left_out: Counter[str] = Counter()

    def __call__(self, kind: str, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            self._left_out[kind] += 1
            return
        self._last[kind] = now
        left_out = self._left_out.pop(kind, 0)
        suffix = f" ({left_out} more like it left out)" if left_out else ""
        self.logger.log(level, message + suffix, *args)


class Ticket:
    """One socket's place: waiting to sign in, then signed in, then given back."""

    def __init__(self, cap: SocketCap, key: str, number: int, evict: Evict) -> None:
        self.cap = cap
        self.key = key
        self.number = number
        self.evict = evict
        self.signed_in = False
        self.closed = False
        # Whose places it holds once signed in: its installation's, else its address's.
        self.installation: UUID | None = None

    def sign_in(self, installation: UUID | None = None) -> bool:
        """Moves the socket to the signed-in count of its address, or of its
        installation for an agent; False when that is full (or when it was
        vouched for at the handshake as someone else)."""
        return self.cap._sign_in(self, installation)

    def close(self) -> None:
        self.cap._close(self)


class SocketCap:
    """Open sockets per client address, for one process."""

    def __init__(
        self,
        limit: int,
        pre_sign_in: int = PRE_SIGN_IN_PER_CLIENT,
        per_installation: int = AGENT_SOCKETS_PER_INSTALLATION,
    ) -> None:
        self.limit = limit
        self.pre_sign_in = pre_sign_in
        self.per_installation = per_installation
        self._signed_in: Counter[str] = Counter()
        self._agents: Counter[UUID] = Counter()
        self._waiting: dict[str, OrderedDict[int, Ticket]] = {}
        self._numbers = count()
        self.note = RateLimitedLog(log)

    def full(self, key: str) -> bool:
        """Whether no further user's socket of this address could sign in now
        (an agent's still could: it counts against its installation)."""
        return self._signed_in[key] >= self.limit

    def agent_full(self, installation: UUID) -> bool:
        return self._agents[installation] >= self.per_installation

    def open_signed_in(
        self, key: str, evict: Evict, installation: UUID | None = None
    ) -> Ticket | None:
        """A place for a socket whose handshake already bore a valid token or
        session cookie: counted as signed in at once, never pushed out; None when
        the address (for an agent: its installation) has no place left."""
        if self.agent_full(installation) if installation else self.full(key):
            return None
        ticket = Ticket(self, key, next(self._numbers), evict)
        self._count_in(ticket, installation)
        return ticket

    def open(self, key: str, evict: Evict) -> tuple[Ticket, Ticket | None]:
        """A place for a new socket, and the waiting socket it pushed out (its
        ``evict`` still to be awaited by the caller), if the budget was full."""
        ticket = Ticket(self, key, next(self._numbers), evict)
        waiting = self._waiting.setdefault(key, OrderedDict())
        pushed_out = None
        if len(waiting) >= self.pre_sign_in:
            _, pushed_out = waiting.popitem(last=False)
            pushed_out.closed = True
        waiting[ticket.number] = ticket
        return ticket, pushed_out

    def _count_in(self, ticket: Ticket, installation: UUID | None) -> None:
        ticket.signed_in = True
        ticket.installation = installation
        if installation:
            self._agents[installation] += 1
        else:
            self._signed_in[ticket.key] += 1

    def _sign_in(self, ticket: Ticket, installation: UUID | None) -> bool:
        if ticket.signed_in or ticket.closed:
            # Vouched for at the handshake: connection_init must name the same
            # one, or a user could sign in on an agent's place.
            return ticket.signed_in and ticket.installation == installation
        if installation:
            if self.agent_full(installation):
                self.note(
                    "agent-" + str(installation),
                    logging.WARNING,
                    "refused a WebSocket of installation %s: %d of its sockets open",
                    installation,
                    self.per_installation,
                )
                return False
        elif self.full(ticket.key):
            self.note(
                "signed-in-" + ticket.key,
                logging.WARNING,
                "refused a signed-in WebSocket from %s: %d signed-in sockets open"
                " (RUNDRUF_WS_MAX_PER_CLIENT)",
                ticket.key,
                self.limit,
            )
            return False
        self._forget_waiting(ticket)
        self._count_in(ticket, installation)
        return True

    def _close(self, ticket: Ticket) -> None:
        if ticket.signed_in:
            ticket.signed_in = False
            if ticket.installation:
                _give_back(self._agents, ticket.installation)
            else:
                _give_back(self._signed_in, ticket.key)
        else:
            self._forget_waiting(ticket)
        ticket.closed = True

    def _forget_waiting(self, ticket: Ticket) -> None:
        waiting = self._waiting.get(ticket.key)
        if waiting is not None:
            waiting.pop(ticket.number, None)
            if not waiting:
                del self._waiting[ticket.key]

    def signed_in_for(self, key: str) -> int:
        return self._signed_in[key]

    def waiting_for(self, key: str) -> int:
        return len(self._waiting.get(key, ()))

    def agent_sockets_for(self, installation: UUID) -> int:
        return self._agents[installation]


def _give_back(counts: Counter[K], key: K) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]
