"""Mails per second from the outbox into a local SMTP server (aiosmtpd on 127.0.0.1).

    .venv/bin/python bench/mail.py [--mails 2000] [--sweeps 4] [--database URL]

Queues N mails, then runs `--sweeps` mail sweeps at once (as that many worker
threads would) until the outbox is empty, through the real path: claim, Message-ID,
delivery log with fsync, SMTP, the `sent` update. Without `--database` it uses a
fresh SQLite file; with a PostgreSQL URL it makes a fresh database beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet
from sqlalchemy import func, insert, select

from api.bootstrap import bootstrap
from api.migrate import upgrade
from api.models import Email, EmailStatus, Language
from api.settings import load_settings
from workers.delivery_log import DeliveryLog
from workers.mail import Mailer


class CountingSink:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.count += 1
        return "250 OK"


def fresh_postgres(url: str) -> str:
    server, _, base = url.replace("postgresql+psycopg://", "postgresql://").rpartition("/")
    name = f"{base}_mailbench"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rpartition("/")[0] + "/" + name


async def run(args: argparse.Namespace, workdir: Path) -> None:
    sink = CountingSink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    database = (
        fresh_postgres(args.database) if args.database else f"sqlite:///{workdir / 'bench.db'}"
    )
    settings = load_settings(
        database_url=database,
        secret_key=Fernet.generate_key().decode(),
        smtp_port=port,
        worker_state_dir=workdir / "state",
        mail_batch_size=args.batch,
        log_level="WARNING",
    )
    upgrade(settings)
    rt = bootstrap(settings)
    now = datetime.now(UTC)
    rows = [
        {
            "to_address": f"user{i}@example.com",
            "subject": f"Rundruf: Bench {i}",
            "body": "Ein Rundruf-Test.\n" * 10,
            "language": Language.DE,
            "status": EmailStatus.QUEUED,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for i in range(args.mails)
    ]
    async with rt.db.transaction() as session:
        await session.execute(insert(Email), rows)
    delivery_log = DeliveryLog(settings.worker_state_dir)
    mailers = [Mailer(rt, delivery_log) for _ in range(args.sweeps)]

    started = time.perf_counter()
    while sum(await asyncio.gather(*(m.sweep() for m in mailers))):
        pass
    elapsed = time.perf_counter() - started

    async with rt.db.reading() as session:
        sent = await session.scalar(
            select(func.count()).select_from(Email).where(Email.status == EmailStatus.SENT)
        )
    delivery_log.close()
    await rt.db.dispose()
    controller.stop()
    assert sent == args.mails == sink.count, (sent, args.mails, sink.count)
    backend = "PostgreSQL" if args.database else "SQLite"
    print(
        f"{args.mails} mails, {args.sweeps} sweeps at once, batches of {args.batch}, {backend}: "
        f"{elapsed:.2f} s, {args.mails / elapsed:.0f} mails/s "
        f"(each accepted by aiosmtpd once: {sink.count})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--sweeps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--database", help="postgresql+psycopg://… (default: SQLite)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(run(args, Path(workdir)))


if __name__ == "__main__":
    main()
