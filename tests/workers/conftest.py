"""Fixtures for the workers: a real SMTP server, the mailer on the real database, Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from api.models import Email, EmailStatus, Language
from api.runtime import Runtime
from tests.conftest import REQUIRE, Clock, make_settings
from tests.workers.smtp_sink import SmtpServer
from workers.delivery_log import DeliveryLog
from workers.mail import Mailer

REDIS_URL = os.environ.get("RUNDRUF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def mail_settings(smtp_port: int, state_dir: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "smtp_port": smtp_port,
        "smtp_timeout_seconds": 5,
        "worker_state_dir": state_dir,
        "mail_from": "Rundruf <rundruf@rundruf.test>",
        "mail_retry_base_seconds": 30,
        "mail_max_attempts": 4,
        "mail_lease_seconds": 60,
    }
    values.update(overrides)
    return values


@pytest.fixture
def mail_rt(rt: Runtime, smtp: SmtpServer, tmp_path: Path, clock: Clock) -> Runtime:
    """The test runtime (its database, its clock) with SMTP settings for the sink."""
    settings = make_settings(**mail_settings(smtp.port, tmp_path / "state"))
    return Runtime(settings=settings, db=rt.db, box=rt.box, clock=clock)


@pytest.fixture
def mailer(mail_rt: Runtime) -> Iterator[Mailer]:
    delivery_log = DeliveryLog(mail_rt.settings.worker_state_dir)
    yield Mailer(mail_rt, delivery_log)
    delivery_log.close()


async def queue_mails(
    rt: Runtime, count: int, *, to: str = "ops@example.com", language: Language = Language.DE
) -> list[uuid.UUID]:
    now = rt.clock()
    rows = [
        Email(
            tenant_id=None,
            to_address=to,
            subject=f"Rundruf: Test {i}",
            body=f"Nachricht {i}",
            language=language,
            status=EmailStatus.QUEUED,
            next_attempt_at=now,
            created_at=now,
        )
        for i in range(count)
    ]
    async with rt.db.transaction() as session:
        session.add_all(rows)
    return [r.id for r in rows]


async def email_row(rt: Runtime, email_id: uuid.UUID) -> Email:
    async with rt.db.reading() as session:
        row = await session.get(Email, email_id)
        assert row is not None
        return row


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError):
        client.close()
        if REQUIRE:
            pytest.fail(f"Redis is required but not reachable at {REDIS_URL}")
        pytest.skip("Redis is not running")
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted after (never FLUSHDB)."""
    prefix = f"rundruf-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    yield
