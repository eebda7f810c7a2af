"""Which counters a sign-in attempt must pass, and how long each makes it wait (no I/O).

After OWASP's "Slow Down Online Guessing Attacks with Device Cookies"
(docs/decisions/login-throttle.md): an attempt from a browser that signed in to
this account before (a valid device cookie) passes only its own device's counter;
every other attempt passes three counters: the account from this client address
(the pair), the account from all untrusted sources together (a spread attack),
and the address over all accounts (spraying). Each counter lets a few failures
through, then makes the next checked attempt wait 1 s, doubling with each
further failure, never more than the cap: slowed, never locked.

The account's counter rations only networks that failed on the account: the
first attempt of a window from a network without failures on it (`fresh`) is
checked at once, so a polling attacker cannot keep a new browser at a clean
address out (issue 14, point 2); a botnet pays one address per guess and window.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

# Failures of one account from all untrusted sources before its guesses are
# rationed; and of one address over any accounts.
ACCOUNT_FREE_FAILURES = 10
ADDRESS_FREE_FAILURES = 20


class Kind(StrEnum):
    PAIR = "pair"
    ACCOUNT = "account"
    ADDRESS = "address"
    DEVICE = "device"


# Whether an attempt counts on the counter when it is admitted (before its
# password is checked) or only once it failed. Counting at admission keeps
# parallel guesses from all passing the free failures at once; it is used where
# every attempt is the same person's (pair, device) or where a miscounted
# in-flight attempt can only slow the account's own attackers (account). An
# address holds many people behind one NAT: there only checked failures count,
# so colleagues signing in at the same moment never hold each other back.
COUNTED_AT_ADMISSION = frozenset({Kind.PAIR, Kind.ACCOUNT, Kind.DEVICE})
# A success forgets what this counter held before it: the person at this
# address (or on this device) knows the password. The account's counter is not
# forgotten: the owner signing in must not reset the attackers' rationing.
FORGOTTEN_ON_SUCCESS = frozenset({Kind.PAIR, Kind.DEVICE})


@dataclass(frozen=True)
class Policy:
    """Free failures of a pair (and of a known device), the cap of every wait, and
    how long a counter lives after its last failure, in seconds."""

    pair_free_failures: int
    max_delay_seconds: int
    window_seconds: int

    def free_failures(self, kind: Kind) -> int:
        if kind is Kind.ACCOUNT:
            return ACCOUNT_FREE_FAILURES
        if kind is Kind.ADDRESS:
            return ADDRESS_FREE_FAILURES
        return self.pair_free_failures

    def delay(self, kind: Kind, failures: int) -> timedelta:
        """The wait after the `failures`-th failure of this counter."""
        return timedelta(
            seconds=backoff(failures, self.free_failures(kind), self.max_delay_seconds)
        )


@dataclass(frozen=True)
class Key:
    """One counter: its kind and a keyed hash naming it (64 hex characters)."""

    kind: Kind
    digest: str

    @property
    def trusted(self) -> bool:
        return self.kind is Kind.DEVICE


@dataclass(frozen=True)
class Counter:
    """A counter as stored."""

    failures: int
    next_allowed_at: datetime
    updated_at: datetime


def backoff(failures: int, free: int, cap: float) -> float:
    """0 before `free` failures, then 1 s doubling with each further one, at most `cap`."""
    if failures < free:
        return 0.0
    return float(min(cap, 2 ** min(failures - free, 30)))


def live_failures(counter: Counter | None, policy: Policy, now: datetime) -> int:
    """The counter's failures, 0 once a whole window passed without one."""
    if counter is None or expired(counter, policy, now):
        return 0
    return counter.failures


def expired(counter: Counter, policy: Policy, now: datetime) -> bool:
    return counter.updated_at <= now - timedelta(seconds=policy.window_seconds)


def fresh(pair: Counter | None, policy: Policy, now: datetime) -> bool:
    """Whether the attempt's network has no failures on the account in the window
    (its pair counter holds none, in flight or checked): then the account's
    rationing does not hold it back. Claimed once per window: the attempt that
    makes the pair's first failure."""
    return live_failures(pair, policy, now) == 0


def wait_seconds(counters: list[Counter | None], policy: Policy, now: datetime) -> float:
    """How much longer an attempt must wait for all its counters; 0 lets it be checked.
    Never more than the cap, whatever a clock step left stored."""
    waits = [0.0]
    for counter in counters:
        if counter is not None:
            waits.append((counter.next_allowed_at - now).total_seconds())
    return min(max(waits), float(policy.max_delay_seconds))


def keys(secret: bytes, account: str, client: str, device: str | None) -> list[Key]:
    """The counters of an attempt: the device's alone when it is known, else the
    pair's, the account's and the address's."""
    if device is not None:
        return [Key(Kind.DEVICE, _digest(secret, Kind.DEVICE, account, device))]
    return [
        Key(Kind.PAIR, _digest(secret, Kind.PAIR, account, client)),
        Key(Kind.ACCOUNT, _digest(secret, Kind.ACCOUNT, account)),
        Key(Kind.ADDRESS, _digest(secret, Kind.ADDRESS, client)),
    ]


def _digest(secret: bytes, kind: Kind, *parts: str) -> str:
    message = "\0".join(["login-throttle", kind.value, *parts]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def account_key(secret: bytes, email: str) -> str:
    """The account as counted: a keyed hash of the normalised e-mail, 64
    characters whatever was typed, which tells no reader of the table what
    strangers typed (a password in the e-mail field, for one)."""
    return hmac.new(secret, b"login-attempt\0" + email.encode(), hashlib.sha256).hexdigest()


def client_key(host: str) -> str:
    """The client address as counted: an IPv6 address by its /64 (one line or
    host holds a whole /64, so counting single addresses would count nothing);
    anything that is no address is cut to 64 characters."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
