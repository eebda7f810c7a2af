"""The outbox: queued mail rows to the SMTP server, each accepted once.

One mail, one life:

1. **Claim** (one transaction): due rows — ``queued`` whose time has come, or
   ``sending`` whose lease ran out (a worker died) — become ``sending`` with a
   lease, one more attempt, and a Message-ID made now if they had none. On
   PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED``, so sweeps
   running at once take disjoint rows; on SQLite every row is claimed by its own
   conditional UPDATE (same status and attempt count as read) with a row-count
   check. Either way the attempt count is the claim: only its holder may finish.
2. **Renew** before each send: the lease is extended by a conditional UPDATE
   (same attempt, still ``sending``); no row changed means a later sweep took
   the mail after this batch outlasted the lease: it is skipped.
3. **Reclaimed?** A row taken back from a dead worker whose Message-ID is in
   the delivery log was accepted already: it is marked sent, not sent again.
   One past the last attempt and not in the log: ``failed``, not sent again.
4. **Send** (SMTP, in a thread). Accepted: the Message-ID goes to the delivery
   log (fsync; a failing write is logged, the mail still counts as accepted)
   and then the row becomes ``sent``. Refused for good (5yz): ``failed``
   with the server's answer. Anything else: back to ``queued`` with exponential
   backoff, ``failed`` after the last attempt.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol

from sqlalchemy import CursorResult, and_, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import mail as mail_text
from api.models import Email, EmailStatus, Language
from api.runtime import Runtime
from workers.delivery_log import DeliveryLog
from workers.errors import DeliveryError
from workers.metrics import MailCounters
from workers.smtp import SmtpTransport

log = logging.getLogger(__name__)

ERROR_MAX = 2000


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    attempt: int  # the attempt count this claim set; the row is ours while it stays so
    message_id: str
    to_address: str
    subject: str
    body: str
    language: Language
    reclaimed: bool  # it was ``sending`` under an expired lease


class Mailer:
    def __init__(
        self,
        rt: Runtime,
        delivery_log: DeliveryLog,
        *,
        transport: Callable[[], Transport] | None = None,
        counters: MailCounters | None = None,
    ) -> None:
        self.rt = rt
        self.delivery_log = delivery_log
        self._transport = transport or (lambda: SmtpTransport(rt.settings))
        self.counters = counters or MailCounters()

    async def sweep(self) -> int:
        """Sends what is due, one batch; returns how many rows it claimed."""
        batch = await self.claim()
        await self.deliver(batch)
        return len(batch)

    async def send(self, email_id: uuid.UUID) -> bool:
        """Sends one mail if it is due and nobody holds it; False when there was nothing to do."""
        batch = await self.claim(only=email_id)
        await self.deliver(batch)
        return bool(batch)

    # -- claim ---------------------------------------------------------------

    def _due(self, now: datetime) -> Any:
        return or_(
            and_(
                Email.status == EmailStatus.QUEUED,
                or_(Email.next_attempt_at.is_(None), Email.next_attempt_at <= now),
            ),
            and_(Email.status == EmailStatus.SENDING, Email.lease_until < now),
        )

    async def claim(self, only: uuid.UUID | None = None) -> list[Claimed]:
        now = self.rt.clock()
        query = (
            select(
                Email.id,
                Email.status,
                Email.attempts,
                Email.message_id,
                Email.to_address,
                Email.subject,
                Email.body,
                Email.language,
            )
            .where(self._due(now), *([Email.id == only] if only is not None else []))
            .order_by(Email.next_attempt_at, Email.id)
            .limit(self.rt.settings.mail_batch_size)
            # PostgreSQL: rows another sweep holds are skipped. SQLite renders no FOR UPDATE.
            .with_for_update(skip_locked=True)
        )
        if not self.rt.settings.is_sqlite:
            async with self.rt.db.transaction() as session:
                rows = (await session.execute(query)).all()
                claimed = [self._claimed(row) for row in rows]
                if claimed:
                    # The rows are locked by this transaction: one bulk UPDATE by id.
                    await session.execute(
                        update(Email),
                        [self._claim_values(c, now) | {"id": c.id} for c in claimed],
                    )
                return claimed
        # SQLite: read, then one short write transaction per row. A read that turned into
        # a write would fail with "database is locked" when another writer came first.
        async with self.rt.db.reading() as session:
            rows = (await session.execute(query)).all()
        claimed = []
        for row in rows:
            async with self.rt.db.transaction() as session:
                if c := await self._claim_row(session, row, now):
                    claimed.append(c)
        return claimed

    async def _claim_row(self, session: AsyncSession, row: Any, now: datetime) -> Claimed | None:
        claimed = self._claimed(row)
        result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
            update(Email)
            .where(
                Email.id == row.id,
                Email.status == row.status,
                Email.attempts == row.attempts,
                self._due(now),
            )
            .values(**self._claim_values(claimed, now))
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return None  # another sweep took it between our read and our write
        return claimed

    def _claimed(self, row: Any) -> Claimed:
        return Claimed(
            id=row.id,
            attempt=row.attempts + 1,
            message_id=row.message_id or mail_text.new_message_id(self.rt.settings.mail_from),
            to_address=row.to_address,
            subject=row.subject,
            body=row.body,
            language=row.language,
            reclaimed=row.status == EmailStatus.SENDING,
        )

    def _claim_values(self, claimed: Claimed, now: datetime) -> dict[str, Any]:
        return {
            "status": EmailStatus.SENDING,
            "attempts": claimed.attempt,
            "lease_until": now + timedelta(seconds=self.rt.settings.mail_lease_seconds),
            "message_id": claimed.message_id,
        }

    # -- deliver -------------------------------------------------------------

    async def deliver(self, batch: Sequence[Claimed]) -> None:
        if not batch:
            return
        transport = self._transport()
        accepted: list[Claimed] = []
        try:
            for index, mail in enumerate(batch):
                outcome = await self._deliver_one(transport, mail)
                if outcome is True:
                    accepted.append(mail)
                elif isinstance(outcome, DeliveryError):
                    # The server is unreachable: the rest of the batch waits as well
                    # instead of each taking its own connect timeout.
                    for rest in batch[index + 1 :]:
                        await self._retry_later(rest, outcome)
                    break
        finally:
            await asyncio.to_thread(transport.close)
            # Every accepted Message-ID is in the delivery log already, so one update for
            # the batch loses nothing if this process dies first: a reclaim finds them.
            await self._mark_sent(accepted)

    async def _deliver_one(self, transport: Transport, mail: Claimed) -> bool | DeliveryError:
        """Sends one claimed mail: True when accepted; the error when the server is unreachable.

        False when the outcome (failed, or queued for later) is stored already, or when
        the mail is no longer ours.
        """
        if not await self._renew(mail):
            # The lease ran out while earlier mails of the batch went out, and another
            # sweep took this one: it is theirs now.
            log.warning("mail %s: lease lost before sending; left to its new holder", mail.id)
            return False
        if mail.reclaimed and await asyncio.to_thread(self.delivery_log.contains, mail.message_id):
            log.info("mail %s was accepted before its worker stopped; marked sent", mail.id)
            return True
        if mail.reclaimed and mail.attempt > self.rt.settings.mail_max_attempts:
            # Its last attempt's worker stopped (or could not write the log) after handing
            # it to the server, maybe after the server accepted it: no further sends.
            await self._fail(
                mail,
                f"gave up after {mail.attempt - 1} attempts: the last one's worker stopped "
                "before storing the outcome; the mail may or may not have been sent",
            )
            return False
        try:
            message = mail_text.build(
                mail_from=self.rt.settings.mail_from,
                to=mail.to_address,
                subject=mail.subject,
                body=mail.body,
                language=mail.language,
                message_id=mail.message_id,
                date=self.rt.clock(),
            )
        except ValueError as exc:  # a header that cannot be written (a line break, say)
            await self._fail(mail, f"cannot be written as a mail: {exc}")
            return False
        try:
            await asyncio.to_thread(transport.send, message)
        except DeliveryError as err:
            if err.permanent:
                await self._fail(mail, err.reason)
                return False
            await self._retry_later(mail, err)
            return err if err.server_down else False
        try:
            await asyncio.to_thread(self.delivery_log.record, mail.message_id)
        except Exception:
            # The server has it: marking it sent is right. Only a crash before that
            # update would now send it again (the window of a missing log line).
            log.exception(
                "mail %s was accepted but the delivery log could not record %s; marking it sent",
                mail.id,
                mail.message_id,
            )
        return True

    async def _renew(self, mail: Claimed) -> bool:
        """Extends the lease before a send; False when the claim is no longer ours."""
        lease = timedelta(seconds=self.rt.settings.mail_lease_seconds)
        return await self._update_claimed(mail, lease_until=self.rt.clock() + lease)

    async def _mark_sent(self, mails: Sequence[Claimed]) -> None:
        if not mails:
            return
        async with self.rt.db.transaction() as session:
            result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
                update(Email)
                .where(
                    tuple_(Email.id, Email.attempts).in_([(m.id, m.attempt) for m in mails]),
                    Email.status == EmailStatus.SENDING,
                )
                .values(
                    status=EmailStatus.SENT,
                    sent_at=self.rt.clock(),
                    lease_until=None,
                    next_attempt_at=None,
                    last_error=None,
                )
                .execution_options(synchronize_session=False)
            )
        self.counters.add(sent=result.rowcount)
        if result.rowcount != len(mails):
            log.warning(
                "%d accepted mails lost their lease before being marked sent; a reclaim "
                "finds them in the delivery log",
                len(mails) - result.rowcount,
            )

    async def _fail(self, mail: Claimed, reason: str) -> None:
        log.warning("mail %s to %s failed for good: %s", mail.id, mail.to_address, reason)
        if await self._finish(
            mail, status=EmailStatus.FAILED, lease_until=None, last_error=reason[:ERROR_MAX]
        ):
            self.counters.add(failed=1)

    async def _retry_later(self, mail: Claimed, err: DeliveryError) -> None:
        settings = self.rt.settings
        if mail.attempt >= settings.mail_max_attempts:
            await self._fail(mail, f"gave up after {mail.attempt} attempts: {err.reason}")
            return
        delay = min(
            settings.mail_retry_base_seconds * 2 ** (mail.attempt - 1),
            settings.mail_retry_cap_seconds,
        )
        log.info("mail %s: %s; next attempt in %d s", mail.id, err.reason, delay)
        if await self._finish(
            mail,
            status=EmailStatus.QUEUED,
            next_attempt_at=self.rt.clock() + timedelta(seconds=delay),
            lease_until=None,
            last_error=err.reason[:ERROR_MAX],
        ):
            self.counters.add(retried=1)

    async def _finish(self, mail: Claimed, **values: Any) -> bool:
        """Writes the outcome if the claim still holds; False when the lease was lost."""
        if not await self._update_claimed(mail, **values):
            log.warning("mail %s: lease lost before the outcome was stored", mail.id)
            return False
        return True

    async def _update_claimed(self, mail: Claimed, **values: Any) -> bool:
        """Updates the row only while this claim (status sending, this attempt) holds it."""
        async with self.rt.db.transaction() as session:
            result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
                update(Email)
                .where(
                    Email.id == mail.id,
                    Email.status == EmailStatus.SENDING,
                    Email.attempts == mail.attempt,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return result.rowcount == 1
