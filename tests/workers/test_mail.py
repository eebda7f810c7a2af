"""The outbox to a real SMTP server (aiosmtpd) on the real database."""

from __future__ import annotations

import asyncio

from api.models import EmailStatus, Language
from api.runtime import Runtime
from tests.conftest import Clock
from tests.workers.conftest import email_row, queue_mails
from tests.workers.smtp_sink import SmtpServer
from workers.delivery_log import DeliveryLog
from workers.mail import Mailer


async def test_it_sends_a_queued_mail_once_and_stores_its_message_id(
    mail_rt: Runtime, mailer: Mailer, smtp: SmtpServer
):
    [mail_id] = await queue_mails(mail_rt, 1)

    assert await mailer.sweep() == 1
    assert await mailer.sweep() == 0

    row = await email_row(mail_rt, mail_id)
    assert row.status is EmailStatus.SENT
    assert row.sent_at == mail_rt.clock()
    assert row.attempts == 1
    assert row.lease_until is None
    [received] = smtp.sink.received
    assert received.message_id == row.message_id
    assert received.message_id.endswith("@rundruf.test>")
    assert received.to == ["ops@example.com"]
    assert received.message["Subject"] == "Rundruf: Test 0"
    assert mailer.counters.sent == 1


async def test_it_writes_the_frame_in_the_tenants_language(
    mail_rt: Runtime, mailer: Mailer, smtp: SmtpServer
):
    await queue_mails(mail_rt, 1, to="de@example.com", language=Language.DE)
    await queue_mails(mail_rt, 1, to="en@example.com", language=Language.EN)

    await mailer.sweep()

    by_to = {r.to[0]: r.message for r in smtp.sink.received}
    german, english = by_to["de@example.com"], by_to["en@example.com"]
    assert german["Content-Language"] == "de"
    assert "Diese Nachricht hat Rundruf automatisch" in german.get_payload(decode=True).decode()
    assert english["Content-Language"] == "en"
    assert "Rundruf sent this message" in english.get_payload(decode=True).decode()
    assert german["Auto-Submitted"] == "auto-generated"


async def test_a_mail_not_yet_due_waits(mail_rt: Runtime, mailer: Mailer, clock: Clock):
    [mail_id] = await queue_mails(mail_rt, 1)
    clock.advance(seconds=-1)

    assert await mailer.sweep() == 0
    assert (await email_row(mail_rt, mail_id)).status is EmailStatus.QUEUED


async def test_an_smtp_outage_is_retried_with_backoff_and_sent_after_recovery(
    mail_rt: Runtime, mailer: Mailer, smtp: SmtpServer, clock: Clock
):
    ids = await queue_mails(mail_rt, 3)
    smtp.stop()

    assert await mailer.sweep() == 3
    first = await email_row(mail_rt, ids[0])
    assert first.status is EmailStatus.QUEUED
    assert first.attempts == 1
    assert "cannot reach the SMTP server" in (first.last_error or "")
    assert (first.next_attempt_at - clock.now).total_seconds() == 30
    # The rest of the batch waited as well, without a connection attempt of their own.
    for mail_id in ids[1:]:
        row = await email_row(mail_rt, mail_id)
        assert (row.status, row.attempts) == (EmailStatus.QUEUED, 1)

    clock.advance(seconds=29)
    assert await mailer.sweep() == 0  # not due yet

    clock.advance(seconds=1)
    assert await mailer.sweep() == 3  # due, still down: the wait doubles
    second = await email_row(mail_rt, ids[0])
    assert (second.attempts, (second.next_attempt_at - clock.now).total_seconds()) == (2, 60)

    smtp.start()
    clock.advance(seconds=60)
    assert await mailer.sweep() == 3

    for mail_id in ids:
        row = await email_row(mail_rt, mail_id)
        assert (row.status, row.attempts, row.last_error) == (EmailStatus.SENT, 3, None)
    assert sorted(smtp.sink.message_ids()) == sorted(
        [(await email_row(mail_rt, i)).message_id for i in ids]
    )


async def test_it_gives_up_after_the_last_attempt(
    mail_rt: Runtime, mailer: Mailer, smtp: SmtpServer, clock: Clock
):
    [mail_id] = await queue_mails(mail_rt, 1)
    smtp.stop()

    for _ in range(mail_rt.settings.mail_max_attempts):
        clock.advance(hours=2)
        assert await mailer.sweep() == 1

    row = await email_row(mail_rt, mail_id)
    assert row.status is EmailStatus.FAILED
    assert row.last_error is not None
    assert row.last_error.startswith("gave up after 4 attempts: cannot reach the SMTP server")
    clock.advance(hours=2)
    assert await mailer.sweep() == 0
    assert mailer.counters.failed == 1


async def test_a_permanent_refusal_marks_the_mail_failed_with_the_reason(
    mail_rt: Runtime, mailer: Mailer, smtp: SmtpServer, clock: Clock
):
    smtp.sink.refuse["nobody@example.com"] = "550 5.1.1 <nobody@example.com>: no such user"
    [bad] = await queue_mails(mail_rt, 1, to="nobody@example.com")
    [good] = await queue_mails(mail_rt, 1, to="ops@example.com")

    await mailer.sweep()

    row = await email_row(mail_rt, bad)
    assert row.status is EmailStatus.FAILED
    assert row.last_error == "recipient refused: 550 5.1.1 <nobody@example.com>: no such user"
    # The refusal was about one mail: the other went out over the same connection.
    assert (await email_row(mail_rt, good)).status is EmailStatus.SENT
    clock.advance(days=1)
    assert await mailer.sweep() == 0
    assert len(smtp.sink.received) == 1


async def test_a_temporary_refusal_is_tried_again_later(
    mail_rt: Runtime, mailer: Mailer, smtp: SmtpServer, clock: Clock
):
    smtp.sink.refuse["full@example.com"] = "452 4.2.2 mailbox full"
    [mail_id] = await queue_mails(mail_rt, 1, to="full@example.com")

    await mailer.sweep()
    row = await email_row(mail_rt, mail_id)
    assert (row.status, row.last_error) == (
        EmailStatus.QUEUED,
        "recipient refused: 452 4.2.2 mailbox full",
    )

    del smtp.sink.refuse["full@example.com"]
    clock.advance(seconds=30)
    await mailer.sweep()
    assert (await email_row(mail_rt, mail_id)).status is EmailStatus.SENT
    assert len(smtp.sink.received) == 1


async def test_two_sweeps_at_once_send_each_mail_once(mail_rt: Runtime, smtp: SmtpServer, tmp_path):
    ids = await queue_mails(mail_rt, 40)
    logs = [DeliveryLog(tmp_path / "a"), DeliveryLog(tmp_path / "b")]
    mailers = [Mailer(mail_rt, log) for log in logs]

    while sum(await asyncio.gather(*(m.sweep() for m in mailers))):
        pass

    for log in logs:
        log.close()
    assert len(smtp.sink.received) == 40
    assert len(set(smtp.sink.message_ids())) == 40
    assert sum(m.counters.sent for m in mailers) == 40
    for mail_id in ids:
        assert (await email_row(mail_rt, mail_id)).status is EmailStatus.SENT


async def test_a_mail_held_by_a_live_worker_is_not_taken(
    mail_rt: Runtime, mailer: Mailer, smtp: SmtpServer, clock: Clock
):
    [mail_id] = await queue_mails(mail_rt, 1)
    [claimed] = await mailer.claim()

    clock.advance(seconds=59)  # the lease (60 s) still runs
    assert await mailer.claim() == []
    assert await mailer.send(mail_id) is False

    await mailer.deliver([claimed])
    assert len(smtp.sink.received) == 1
