"""How long a sign-in attempt must wait, from the failures before it (no I/O).

Three counts within the window decide (docs/decisions/login-throttle.md):
the failures of this account from this client address (the pair), of the
account from anywhere (a spread attack), and of the address on any account
(spraying). Each only ever *delays* the next attempt, counted from the last
failure of the pair or of the address, so nobody can lock an account for
someone else: a pair without failures is never held back by the account's count.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime

# Failures of one account from everywhere before each failing pair waits a
# little more; and of one address on any accounts before it waits at all.
ACCOUNT_FREE_FAILURES = 10
ADDRESS_FREE_FAILURES = 20


@dataclass(frozen=True)
class Policy:
    """Free failures of a pair, and the cap of every wait, in seconds."""

    pair_free_failures: int
    max_delay_seconds: int


@dataclass(frozen=True)
class Failures:
    """Failures within the window, this attempt not counted."""

    pair: int
    pair_last: datetime | None
    account: int
    address: int
    address_last: datetime | None


def backoff(failures: int, free: int, cap: float) -> float:
    """0 up to `free` failures, then 1 s doubling with each further one, at most `cap`."""
    if failures < free:
        return 0.0
    return float(min(cap, 2 ** min(failures - free, 30)))


def wait_seconds(failures: Failures, policy: Policy, now: datetime) -> float:
    """How much longer this attempt must wait; 0 lets it be checked."""
    cap = policy.max_delay_seconds
    waits = [0.0]
    if failures.pair_last is not None:
        # The account's count slows only pairs that failed themselves, and mildly
        # (half the cap): a spread attack never holds back a clean address.
        pair = max(
            backoff(failures.pair, policy.pair_free_failures, cap),
            backoff(failures.account, ACCOUNT_FREE_FAILURES, cap / 2),
        )
        waits.append(pair - (now - failures.pair_last).total_seconds())
    if failures.address_last is not None:
        spray = backoff(failures.address, ADDRESS_FREE_FAILURES, cap)
        waits.append(spray - (now - failures.address_last).total_seconds())
    return max(waits)


def account_key(secret: bytes, email: str) -> str:
    """The account as stored with its attempts: a keyed hash of the normalised
    e-mail, 64 characters whatever was typed, which tells no reader of the table
    what strangers typed (a password in the e-mail field, for one)."""
    return hmac.new(secret, b"login-attempt\0" + email.encode(), hashlib.sha256).hexdigest()


def client_key(host: str) -> str:
    """The client address as counted: an IPv6 address by its /64 (one line or
    host holds a whole /64, so counting single addresses would count nothing);
    anything that is no address is cut to the column's 64 characters."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
