"""Login throttling in the database (so it holds across API processes).

An attempt is written and committed before the failures are counted, so that
parallel guesses see each other and none slips past; an attempt that must wait
is deleted again at once, so refusals neither fill the table nor prolong the
wait. What stays is a failure, kept as long as the window counts it.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import login_throttle
from api.domain.login_throttle import Failures, Policy
from api.errors import TooManyAttempts
from api.models import LoginAttempt
from api.runtime import Runtime

# Expired attempts deleted with each new one: bounded work per request, and more
# than one, so the table never holds much beyond what the window counts.
PRUNE_BATCH = 100


async def admit(rt: Runtime, account: str, client: str, now: datetime) -> uuid.UUID:
    """Records the attempt and returns its id, or refuses it with TOO_MANY_ATTEMPTS
    and how many seconds to wait (leaving nothing stored)."""
    attempt = LoginAttempt(id=uuid.uuid4(), account=account, client=client, at=now)
    since = now - timedelta(seconds=rt.settings.login_window_seconds)
    async with rt.db.transaction() as session:
        await _prune(session, since)
        session.add(attempt)
    async with rt.db.reading() as session:
        failures = await _failures(session, attempt.id, account, client, since)
    policy = Policy(
        pair_free_failures=rt.settings.login_free_failures,
        max_delay_seconds=rt.settings.login_max_delay_seconds,
    )
    wait = login_throttle.wait_seconds(failures, policy, now)
    if wait > 0:
        async with rt.db.transaction() as session:
            await session.execute(delete(LoginAttempt).where(LoginAttempt.id == attempt.id))
        raise TooManyAttempts(
            "too many failed sign-ins; try again later",
            retryAfterSeconds=max(1, math.ceil(wait)),
        )
    return attempt.id


async def forget_pair(session: AsyncSession, account: str, client: str) -> None:
    """After a success: this address's failures on this account no longer count
    (the account's failures from elsewhere still do)."""
    await session.execute(
        delete(LoginAttempt).where(LoginAttempt.account == account, LoginAttempt.client == client)
    )


async def _failures(
    session: AsyncSession, own: uuid.UUID, account: str, client: str, since: datetime
) -> Failures:
    recent = [LoginAttempt.at > since, LoginAttempt.id != own]

    async def count_and_last(*where: ColumnElement[bool]) -> tuple[int, datetime | None]:
        count, last = (
            await session.execute(
                select(func.count(), func.max(LoginAttempt.at)).where(*where, *recent)
            )
        ).one()
        return int(count), last

    pair, pair_last = await count_and_last(
        LoginAttempt.account == account, LoginAttempt.client == client
    )
    account_count, _ = await count_and_last(LoginAttempt.account == account)
    address, address_last = await count_and_last(LoginAttempt.client == client)
    return Failures(
        pair=pair,
        pair_last=pair_last,
        account=account_count,
        address=address,
        address_last=address_last,
    )


async def _prune(session: AsyncSession, since: datetime) -> None:
    expired = select(LoginAttempt.id).where(LoginAttempt.at <= since).limit(PRUNE_BATCH)
    await session.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(expired)))
