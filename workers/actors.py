"""The actors: each takes ids (or nothing), is idempotent, and finds its work in the database.

Declared on a broker handed in (``declare``), not on a global one at import,
so a process decides what broker it talks to and tests can make their own.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq import Broker

from api.runtime import Runtime
from api.services import watchdog
from workers.delivery_log import DeliveryLog
from workers.mail import Mailer
from workers.metrics import MailCounters
from workers.tts import synthesis

log = logging.getLogger(__name__)

MAIL = "mail"
WATCHDOG = "watchdog"
TTS = "tts"

# Dramatiq stops an actor after 10 minutes unless told otherwise. A mail batch may take
# batch size x (connect, MAIL, RCPT, DATA) x the SMTP timeout: 50 x 4 x 30 s = 100 min
# with the defaults. Cutting it mid-send would leave accepted mails unmarked; a batch
# that outlasts its lease is safe (each send renews it first), so the limit only needs
# to end a batch that hangs for good. Larger batches or timeouts need a larger value.
MAIL_TIME_LIMIT_MS = 3 * 3600 * 1000


class WorkerContext:
    """What the actors of one process share: the runtime, the mailer, the counters."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.counters = MailCounters()
        self.delivery_log = DeliveryLog(rt.settings.worker_state_dir)
        self.mailer = Mailer(rt, self.delivery_log, counters=self.counters)

    async def aclose(self) -> None:
        self.delivery_log.close()
        await self.rt.hub.stop()
        self.rt.tasks.close()
        await self.rt.db.dispose()


@dataclass(frozen=True)
class Actors:
    send_mail: dramatiq.Actor[[str], None]
    mail_sweep: dramatiq.Actor[[], None]
    watchdog_sweep: dramatiq.Actor[[], None]
    synthesize_announcement: dramatiq.Actor[[str], None]
    tts_sweep: dramatiq.Actor[[], None]


def declare(broker: Broker, context: Callable[[], WorkerContext]) -> Actors:
    """Declares the actors on ``broker``; ``context`` gives this process's shared state."""

    async def send_mail(email_id: str) -> None:
        if (parsed := _uuid(email_id)) is not None:
            await context().mailer.send(parsed)

    async def mail_sweep() -> None:
        ctx = context()
        await asyncio.to_thread(ctx.delivery_log.prune)
        claimed = await ctx.mailer.sweep()
        if claimed >= ctx.rt.settings.mail_batch_size:
            # A full batch: more may be waiting; go on now instead of at the next tick.
            await _send(actors.mail_sweep.send)

    async def watchdog_sweep() -> None:
        result = await watchdog.sweep(context().rt)
        for mail_id in result.mail_ids:
            # Sooner than the next mail sweep; that sweep would find them anyway.
            await _send(actors.send_mail.send, str(mail_id))

    async def synthesize_announcement(announcement_id: str) -> None:
        if (parsed := _uuid(announcement_id)) is not None:
            await synthesis.synthesize_announcement(context().rt, parsed)

    async def tts_sweep() -> None:
        rt = context().rt
        # Without Redis the API wakes nobody: every pending row is this sweep's at once.
        # With Redis it takes only rows whose wake-up must have been lost.
        await synthesis.synthesize_pending(rt, None if rt.settings.redis_url else timedelta(0))

    def make(
        fn: Callable[..., Coroutine[Any, Any, None]], queue: str, **options: Any
    ) -> dramatiq.Actor[Any, None]:
        decorate = dramatiq.actor(
            broker=broker, actor_name=fn.__name__, queue_name=queue, **options
        )
        return decorate(fn)

    # The database keeps every piece of work: a sweep finds again what a failed message
    # left, so Dramatiq's own retries would only add a second schedule.
    actors = Actors(
        send_mail=make(send_mail, MAIL, max_retries=0, time_limit=MAIL_TIME_LIMIT_MS),
        mail_sweep=make(mail_sweep, MAIL, max_retries=0, time_limit=MAIL_TIME_LIMIT_MS),
        watchdog_sweep=make(watchdog_sweep, WATCHDOG, max_retries=0),
        synthesize_announcement=make(synthesize_announcement, TTS, max_retries=0),
        # One synthesis may take RUNDRUF_TTS_TIMEOUT_SECONDS; a sweep speaks them one by one.
        tts_sweep=make(tts_sweep, TTS, max_retries=0, time_limit=3_600_000),
    )
    return actors


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        log.error("message with a malformed id %r dropped", value)
        return None


async def _send(send: Callable[..., object], *args: str) -> None:
    # Enqueueing talks to Redis synchronously; keep it off the event loop.
    await asyncio.to_thread(send, *args)
