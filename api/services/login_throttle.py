"""The login throttle's counters in the database (so it holds across API processes).

`admit` reads the attempt's counters; when one makes it wait, the attempt is
refused from that read alone, so a flood of refusals writes nothing. Otherwise
it claims them in one transaction: each counter that counts at admission is
incremented with an atomic upsert that only matches while the counter lets an
attempt through (`next_allowed_at <= now`), and sets the wait that follows if
this attempt fails; the address's counter, which counts only checked failures,
is claimed by compare-and-set on its failures and `next_allowed_at` once its
next failure would make it wait. An attempt from a network without failures on
the account (`rules.fresh`) is not held back by the account's counter: its
pair's upsert must make the pair's first failure of the window (so one attempt
per network and window is let past the rationing), and it counts on the account
unconditionally, only ever extending its wait. An attempt that loses a race
reads again and is refused read-only. `failed` records a checked failure on the address; `succeeded`
gives back what the attempt claimed and forgets the pair's (or the device's)
earlier failures, never the ones of attempts that came after it.

Storage is bounded overall: counters a window old are deleted, and beyond
`login_max_counters` rows the least recently used untrusted counters go first.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import login_throttle as rules
from api.domain.login_throttle import (
    COUNTED_AT_ADMISSION,
    FORGOTTEN_ON_SUCCESS,
    Key,
    Kind,
    Policy,
)
from api.errors import TooManyAttempts
from api.models import LoginCounter
from api.runtime import Runtime
from api.settings import Settings

log = logging.getLogger(__name__)

# Counters a window old deleted with each new one: bounded work per request.
PRUNE_BATCH = 100
# An attempt that loses the race for a counter reads it again this often.
CLAIM_ROUNDS = 3
FULL_WARNING_EVERY = timedelta(minutes=5)
_last_full_warning: datetime | None = None


@dataclass(frozen=True)
class Slot:
    """A wait an attempt set on a counter, and the one it replaced (given back on
    success, unless a later attempt moved it since)."""

    mine: datetime
    before: datetime


@dataclass
class Claim:
    """What an admitted attempt took: its counters, the failures each counted
    with this attempt included, and the waits it set (to give back on success)."""

    keys: list[Key]
    counted: dict[str, int] = field(default_factory=dict)
    slots: dict[str, Slot] = field(default_factory=dict)
    # Counters that did not exist when the attempt was admitted (a failure makes them).
    new: set[str] = field(default_factory=set)


class _Lost(Exception):
    """Raised when another attempt claimed a counter between our read and our claim."""


def policy_of(settings: Settings) -> Policy:
    return Policy(
        pair_free_failures=settings.login_free_failures,
        max_delay_seconds=settings.login_max_delay_seconds,
        window_seconds=settings.login_window_seconds,
    )


async def admit(rt: Runtime, keys: list[Key], now: datetime) -> Claim:
    """Claims the attempt's counters, or refuses it with TOO_MANY_ATTEMPTS and
    how many seconds to wait (writing nothing)."""
    policy = policy_of(rt.settings)
    for _ in range(CLAIM_ROUNDS):
        async with rt.db.reading() as session:
            counters = await _read(session, keys)
        pair = next((k for k in keys if k.kind is Kind.PAIR), None)
        first = pair is not None and rules.fresh(counters.get(pair.digest), policy, now)
        # A network's first attempt of the window is not rationed by the account.
        held: list[rules.Counter | None] = [
            c for d, c in counters.items() if not (first and _kind(keys, d) is Kind.ACCOUNT)
        ]
        wait = rules.wait_seconds(held, policy, now)
        if wait > 0:
            raise _refusal(wait)
        try:
            claim = await _claim(rt, keys, counters, policy, now, first=first)
        except _Lost:
            continue
        claim.new = {k.digest for k in keys if k.digest not in counters}
        if any(k.digest in claim.new for k in keys if k.kind in COUNTED_AT_ADMISSION):
            await _bound(rt, now, keys)
        return claim
    raise _refusal(1)


async def failed(rt: Runtime, claim: Claim, now: datetime) -> None:
    """The attempt was checked and failed: the counters that count only checked
    failures (the address's) count it now; the others counted it at admission."""
    policy = policy_of(rt.settings)
    later = [k for k in claim.keys if k.kind not in COUNTED_AT_ADMISSION]
    if not later:
        return
    async with rt.db.transaction() as session:
        for key in later:
            counted = await _count(session, key, policy, now, only_if_allowed=False)
            assert counted is not None
            delay = policy.delay(key.kind, counted[0])
            if delay:
                await session.execute(
                    update(LoginCounter)
                    .where(LoginCounter.key == key.digest)
                    .where(LoginCounter.next_allowed_at < now + delay)
                    .values(next_allowed_at=now + delay)
                )
    if any(k.digest in claim.new for k in later):
        await _bound(rt, now, claim.keys)


async def succeeded(session: AsyncSession, claim: Claim, now: datetime) -> None:
    """The attempt signed in: it was no failure. Gives back what it counted and
    the waits it set; the pair and the device forget their earlier failures too
    (the person there knows the password), the account does not (its owner must
    not reset the attackers' rationing). Attempts admitted after this one keep
    their count."""
    for key in claim.keys:
        counted = claim.counted.get(key.digest)
        if counted is not None:
            back = counted if key.kind in FORGOTTEN_ON_SUCCESS else 1
            await session.execute(
                update(LoginCounter)
                .where(LoginCounter.key == key.digest)
                .values(
                    failures=case(
                        (LoginCounter.failures >= back, LoginCounter.failures - back), else_=0
                    )
                )
            )
        slot = claim.slots.get(key.digest)
        if slot is not None:
            await session.execute(
                update(LoginCounter)
                .where(LoginCounter.key == key.digest, LoginCounter.next_allowed_at == slot.mine)
                .values(next_allowed_at=slot.before)
            )
    forgotten = [k.digest for k in claim.keys if k.kind in FORGOTTEN_ON_SUCCESS]
    if forgotten:
        await session.execute(
            delete(LoginCounter).where(
                LoginCounter.key.in_(forgotten),
                LoginCounter.failures == 0,
                LoginCounter.next_allowed_at <= now,
            )
        )


def _kind(keys: list[Key], digest: str) -> Kind:
    return next(k.kind for k in keys if k.digest == digest)


def _refusal(wait: float) -> TooManyAttempts:
    return TooManyAttempts(
        "too many failed sign-ins; try again later",
        retryAfterSeconds=max(1, math.ceil(wait)),
    )


async def _read(session: AsyncSession, keys: list[Key]) -> dict[str, rules.Counter]:
    rows = await session.execute(
        select(
            LoginCounter.key,
            LoginCounter.failures,
            LoginCounter.next_allowed_at,
            LoginCounter.updated_at,
        ).where(LoginCounter.key.in_([k.digest for k in keys]))
    )
    return {
        key: rules.Counter(failures=failures, next_allowed_at=next_at, updated_at=updated)
        for key, failures, next_at, updated in rows
    }


async def _claim(
    rt: Runtime,
    keys: list[Key],
    counters: dict[str, rules.Counter],
    policy: Policy,
    now: datetime,
    *,
    first: bool,
) -> Claim:
    """`first`: the attempt's network had no failures on the account when read;
    it then passes the account's counter if it makes the pair's first failure."""
    claim = Claim(keys=keys)
    async with rt.db.transaction() as session:
        # One order for every attempt, so two on PostgreSQL never wait for each other in a ring.
        for key in sorted(keys, key=lambda k: k.digest):
            if first and key.kind is Kind.ACCOUNT:
                await _count_past_rationing(session, claim, key, policy, now)
                continue
            if key.kind in COUNTED_AT_ADMISSION:
                counted = await _count(session, key, policy, now, only_if_allowed=True)
                if counted is None:
                    raise _Lost
                failures = counted[0]
                if first and key.kind is Kind.PAIR and failures != 1:
                    # Another attempt from this network came first in this window.
                    raise _Lost
                claim.counted[key.digest] = failures
                delay = policy.delay(key.kind, failures)
                if delay:
                    claim.slots[key.digest] = Slot(mine=now + delay, before=now)
                    await session.execute(
                        update(LoginCounter)
                        .where(LoginCounter.key == key.digest)
                        .values(next_allowed_at=now + delay)
                    )
                continue
            # Counts only when checked: once its next failure would make the
            # address wait, this attempt takes the next opening by compare-and-set.
            counter = counters.get(key.digest)
            delay = policy.delay(key.kind, rules.live_failures(counter, policy, now) + 1)
            if counter is None or not delay:
                continue
            taken = await session.execute(
                update(LoginCounter)
                .where(
                    LoginCounter.key == key.digest,
                    LoginCounter.failures == counter.failures,
                    LoginCounter.next_allowed_at == counter.next_allowed_at,
                )
                .values(next_allowed_at=now + delay)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise _Lost
            claim.slots[key.digest] = Slot(mine=now + delay, before=now)
    return claim


async def _count_past_rationing(
    session: AsyncSession, claim: Claim, key: Key, policy: Policy, now: datetime
) -> None:
    """Counts a fresh network's attempt on the account whatever its wait, and
    extends the wait as its failure would, never shortening it: the polling
    attackers' next opening does not come sooner for it."""
    counted = await _count(session, key, policy, now, only_if_allowed=False)
    assert counted is not None
    failures, before = counted
    claim.counted[key.digest] = failures
    delay = policy.delay(key.kind, failures)
    if delay and before < now + delay:
        # The upsert holds the row, so `before` is still the stored wait.
        await session.execute(
            update(LoginCounter)
            .where(LoginCounter.key == key.digest)
            .values(next_allowed_at=now + delay)
        )
        claim.slots[key.digest] = Slot(mine=now + delay, before=max(before, now))


async def _count(
    session: AsyncSession, key: Key, policy: Policy, now: datetime, *, only_if_allowed: bool
) -> tuple[int, datetime] | None:
    """Adds one failure to the counter (made if missing, restarted if a window
    passed since its last one) and returns its failures and its wait as stored
    before this call changes it; None when `only_if_allowed` and the counter
    makes attempts wait."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(LoginCounter).values(
        key=key.digest, trusted=key.trusted, failures=1, next_allowed_at=now, updated_at=now
    )
    stale = LoginCounter.updated_at <= now - timedelta(seconds=policy.window_seconds)
    stmt = stmt.on_conflict_do_update(
        index_elements=[LoginCounter.key],
        set_={
            "failures": case((stale, 1), else_=LoginCounter.failures + 1),
            "updated_at": now,
        },
        where=(LoginCounter.next_allowed_at <= now) if only_if_allowed else None,
    )
    result = await session.execute(
        stmt.returning(LoginCounter.failures, LoginCounter.next_allowed_at)
    )
    row = result.first()
    return (int(row[0]), row[1]) if row is not None else None


async def _bound(rt: Runtime, now: datetime, keep: list[Key]) -> None:
    """Deletes counters a window old (a batch), and the least recently used
    untrusted ones beyond the cap (known devices last; never this attempt's)."""
    settings = rt.settings
    window = timedelta(seconds=settings.login_window_seconds)
    async with rt.db.transaction() as session:
        old = (
            select(LoginCounter.key)
            .where(LoginCounter.updated_at <= now - window, LoginCounter.next_allowed_at <= now)
            .limit(PRUNE_BATCH)
            .with_for_update(skip_locked=True)
        )
        await session.execute(delete(LoginCounter).where(LoginCounter.key.in_(old)))
        rows = int(await session.scalar(select(func.count()).select_from(LoginCounter)) or 0)
        excess = rows - settings.login_max_counters
        if excess <= 0:
            return
        oldest = (
            select(LoginCounter.key)
            .where(LoginCounter.key.not_in([k.digest for k in keep]))
            .order_by(LoginCounter.trusted, LoginCounter.updated_at)
            .limit(excess)
            .with_for_update(skip_locked=True)
        )
        await session.execute(delete(LoginCounter).where(LoginCounter.key.in_(oldest)))
    global _last_full_warning
    if _last_full_warning is None or now - _last_full_warning >= FULL_WARNING_EVERY:
        # Once in a while, not for every guess of the flood that fills the table.
        _last_full_warning = now
        log.warning(
            "the login throttle holds %d counters, more than its cap of %d; the least "
            "recently used were deleted (many addresses or accounts tried at once?)",
            rows,
            settings.login_max_counters,
        )
