"""Waiting at start for a PostgreSQL that is not reachable yet (docs/decisions/start-order.md).

A server that boots PostgreSQL and `rundruf serve` together must not lose the race:
while nothing answers (refused, unreachable, timed out, name not resolved) or the
server says it is starting, `serve` waits with a growing pause and says so. When
PostgreSQL answers with a refusal that waiting will not change (wrong password, no
such role or database), it stops at once with that reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from api.errors import ConfigurationError
from api.settings import Settings

log = logging.getLogger(__name__)

FIRST_PAUSE_S = 1.0
MAX_PAUSE_S = 30.0
CONNECT_TIMEOUT_S = 5
# Refusals of a server that is there but not ready: these pass by themselves.
PASSING_STATES = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "too many clients",
    "remaining connection slots are reserved",
)


def pauses(first: float = FIRST_PAUSE_S, cap: float = MAX_PAUSE_S) -> Iterator[float]:
    """1, 2, 4, ... seconds, capped."""
    pause = first
    while True:
        yield pause
        pause = min(pause * 2, cap)


def worth_waiting(message: str) -> bool:
    """Whether a connection failure may pass by itself. libpq marks what the server
    answered with its severity; without one, no server answered."""
    if "FATAL:" not in message and "ERROR:" not in message:
        return True
    return any(state in message for state in PASSING_STATES)


def database_address(settings: Settings) -> str:
    """host:port, never the user or password."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.sync_database_url)
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def wait_for_database(settings: Settings, sleep: Callable[[float], None] = time.sleep) -> None:
    """Returns once PostgreSQL accepts a connection; ConfigurationError when it
    refuses for a reason that waiting will not change. SQLite has nothing to wait for."""
    if settings.is_sqlite:
        return
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.pool import NullPool

    where = database_address(settings)
    engine = create_engine(
        settings.sync_database_url,
        poolclass=NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )
    try:
        for attempt, pause in enumerate(pauses(), start=1):
            try:
                with engine.connect():
                    if attempt > 1:
                        log.info("the database at %s answers (attempt %d)", where, attempt)
                    return
            except OperationalError as exc:
                # libpq's text names host and port, never the password.
                reason = " ".join(str(exc.orig).split())
                if not worth_waiting(reason):
                    raise ConfigurationError(
                        f"the database at {where} refuses the connection: {reason}"
                    ) from None
                log.warning(
                    "waiting for the database at %s (attempt %d, next in %g s): %s",
                    where,
                    attempt,
                    pause,
                    reason,
                )
                sleep(pause)
    finally:
        engine.dispose()
