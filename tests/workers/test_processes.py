"""`rundruf worker` and `rundruf scheduler` as real processes on Redis, PostgreSQL and SMTP."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from api.bootstrap import bootstrap
from api.migrate import upgrade
from api.models import Email, EmailStatus
from api.runtime import Runtime
from api.settings import load_settings
from tests.conftest import SECRET_KEY, drop_database, fresh_database, need_postgres
from tests.processes import RUNDRUF, clean_env, free_port, wait_until
from tests.workers.conftest import REDIS_URL, queue_mails
from tests.workers.smtp_sink import SmtpServer
from workers.actors import declare
from workers.broker import close_broker, make_broker, queue_depths

METRICS_TOKEN = "worker-metrics-test-token"


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int | None = None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.log.name} exited:\n{self.text()[-3000:]}")
        return True

    def metrics(self) -> str:
        response = httpx.get(
            f"http://127.0.0.1:{self.metrics_port}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=5,
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return response.text

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=30)


@pytest.fixture
def database() -> Iterator[str]:
    need_postgres()
    url = fresh_database(f"w{uuid.uuid4().hex[:8]}")
    upgrade(load_settings(database_url=url, secret_key=SECRET_KEY))
    yield url
    drop_database(url)


def _env(
    database: str, namespace: str, smtp_port: int, state: Path, **extra: str
) -> dict[str, str]:
    return clean_env(
        RUNDRUF_DATABASE_URL=database,
        RUNDRUF_SECRET_KEY=SECRET_KEY,
        RUNDRUF_REDIS_URL=REDIS_URL,
        RUNDRUF_WORKER_NAMESPACE=namespace,
        RUNDRUF_SMTP_PORT=str(smtp_port),
        RUNDRUF_MAIL_FROM="Rundruf <rundruf@rundruf.test>",
        RUNDRUF_WORKER_STATE_DIR=str(state),
        **extra,
    )


def _start(command: str, env: dict[str, str], log: Path, metrics_port: int | None = None) -> Proc:
    if metrics_port is not None:
        env = dict(env, RUNDRUF_WORKER_METRICS_PORT=str(metrics_port))
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*RUNDRUF, command], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Proc(process, log, metrics_port)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


async def _statuses(rt: Runtime) -> dict[EmailStatus, int]:
    from sqlalchemy import func, select

    async with rt.db.reading() as session:
        rows = await session.execute(select(Email.status, func.count()).group_by(Email.status))
        return {status: count for status, count in rows.all()}


async def test_two_worker_processes_sweeping_at_once_send_each_mail_once(
    database: str, namespace: str, smtp: SmtpServer, tmp_path: Path
):
    env = _env(
        database,
        namespace,
        smtp.port,
        tmp_path / "state",
        RUNDRUF_WORKER_THREADS="4",
        RUNDRUF_METRICS_TOKEN=METRICS_TOKEN,
    )
    workers = [
        _start("worker", env, tmp_path / f"worker-{i}.log", metrics_port=free_port())
        for i in range(2)
    ]
    settings = load_settings(
        database_url=database,
        secret_key=SECRET_KEY,
        redis_url=REDIS_URL,
        worker_namespace=namespace,
    )
    rt = bootstrap(settings)
    broker = make_broker(settings)
    try:
        for w in workers:
            wait_until(lambda w=w: w.alive() and "metrics on" in w.text(), 30, "worker start")
        ids = await queue_mails(rt, 120)
        actors = declare(broker, lambda: pytest.fail("the test process runs no actors"))
        # Sweeps and per-mail messages at once, in both processes: many claims race.
        for _ in range(10):
            actors.mail_sweep.send()
        for mail_id in ids:
            actors.send_mail.send(str(mail_id))

        for _ in range(600):
            if (await _statuses(rt)).get(EmailStatus.SENT) == len(ids):
                break
            for w in workers:
                w.alive()
            await asyncio.sleep(0.1)
        assert await _statuses(rt) == {EmailStatus.SENT: len(ids)}
        assert len(smtp.sink.received) == len(ids)
        assert len(set(smtp.sink.message_ids())) == len(ids)

        texts = [w.metrics() for w in workers]
        assert sum(_metric(t, "rundruf_worker_mails_sent_total") for t in texts) == len(ids)
        assert 'rundruf_mails{status="sent"} 120' in texts[0]
        assert 'rundruf_worker_queue_depth{queue="mail"}' in texts[0]
        assert [w.stop() for w in workers] == [0, 0]
    finally:
        for w in workers:
            w.stop(signal.SIGKILL)
        close_broker(broker)
        await rt.db.dispose()


def test_a_second_scheduler_sends_nothing_until_the_first_one_is_gone(
    redis_client: redis.Redis, namespace: str, smtp: SmtpServer, tmp_path: Path
):
    env = _env(
        "sqlite:///" + str(tmp_path / "unused.db"),
        namespace,
        smtp.port,
        tmp_path / "state",
        RUNDRUF_MAIL_SWEEP_SECONDS="0.2",
        RUNDRUF_WATCHDOG_SWEEP_SECONDS="0.5",
        RUNDRUF_SCHEDULER_LEASE_SECONDS="1",
        RUNDRUF_LOG_LEVEL="DEBUG",
    )
    first = _start("scheduler", env, tmp_path / "first.log")
    second = None
    try:
        wait_until(lambda: first.alive() and "holds the lease" in first.text(), 30, "first leads")
        second = _start("scheduler", env, tmp_path / "second.log")
        wait_until(
            lambda: second.alive() and "is waiting for the lease" in second.text(),
            30,
            "second waits",
        )
        sends_before = first.text().count("sent mail_sweep")
        wait_until(
            lambda: first.text().count("sent mail_sweep") >= sends_before + 5, 30, "five sends"
        )
        assert "holds the lease" not in second.text()
        assert "sent " not in second.text()

        first.stop(signal.SIGKILL)  # no release: the lease has to run out
        wait_until(lambda: "sent mail_sweep" in second.text(), 30, "the second takes over")
        assert "holds the lease" in second.text()
        assert second.stop() == 0
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop(signal.SIGKILL)

    settings = load_settings(secret_key=SECRET_KEY, redis_url=REDIS_URL, worker_namespace=namespace)
    broker = make_broker(settings)
    try:
        declare(broker, lambda: pytest.fail("no actors run here"))
        depths = queue_depths(broker)
    finally:
        close_broker(broker)
    assert depths["mail"] > 0
    assert depths["watchdog"] > 0
    # A clean stop gives the lease back at once.
    assert redis_client.get(f"{namespace}:scheduler-lease") is None


def test_the_scheduler_refuses_to_start_without_redis(tmp_path: Path):
    env = clean_env(RUNDRUF_SECRET_KEY=SECRET_KEY)
    result = subprocess.run(
        [*RUNDRUF, "scheduler"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "needs RUNDRUF_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


async def test_on_the_embedded_default_one_worker_process_schedules_and_sends(
    smtp: SmtpServer, tmp_path: Path
):
    database = "sqlite:///" + str(tmp_path / "rundruf.db")
    settings = load_settings(database_url=database, secret_key=SECRET_KEY)
    upgrade(settings)
    rt = bootstrap(settings)
    env = clean_env(
        RUNDRUF_DATABASE_URL=database,
        RUNDRUF_SECRET_KEY=SECRET_KEY,
        RUNDRUF_SMTP_PORT=str(smtp.port),
        RUNDRUF_WORKER_STATE_DIR=str(tmp_path / "state"),
        RUNDRUF_MAIL_SWEEP_SECONDS="0.2",
    )
    first = _start("worker", env, tmp_path / "first.log")
    second = _start("worker", env, tmp_path / "second.log")
    try:
        ids = await queue_mails(rt, 5)
        for _ in range(300):
            if (await _statuses(rt)).get(EmailStatus.SENT) == len(ids):
                break
            first.alive()
            await asyncio.sleep(0.1)
        assert await _statuses(rt) == {EmailStatus.SENT: len(ids)}
        assert len(smtp.sink.received) == len(ids)
        # Started twice by mistake: one scheduler, the other waits on the lock file.
        wait_until(
            lambda: "lease" in first.text() and "lease" in second.text(), 30, "both schedulers"
        )
        logs = first.text() + second.text()
        assert logs.count("holds the lease") == 1
        assert logs.count("is waiting for the lease") == 1
        assert [first.stop(), second.stop()] == [0, 0]
    finally:
        first.stop(signal.SIGKILL)
        second.stop(signal.SIGKILL)
        await rt.db.dispose()
