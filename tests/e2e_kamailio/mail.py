"""The mails of the Kamailio tests as a customer gets them: `rundruf worker` on the
module's database sends the outbox over SMTP to aiosmtpd (tests/workers/smtp_sink.py).

The worker runs without Redis (its in-process broker and its own scheduler, as on the
embedded default): the module's database is its alone, and no other test's queue on the
shared Redis can take its messages or give it theirs. It sweeps the outbox every second.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.processes import RUNDRUF, clean_env
from tests.workers.smtp_sink import Received, SmtpServer


class Mailer:
    def __init__(self, sink: SmtpServer, worker: subprocess.Popen[bytes], log: Path) -> None:
        self.sink = sink
        self.worker = worker
        self.log = log

    def received(self, subject_part: str, at_least: int = 1) -> list[Received] | None:
        """The mails delivered so far whose subject has `subject_part`, once there are
        `at_least` of them (None before: for wait_until)."""
        if self.worker.poll() is not None:
            raise AssertionError(f"the worker exited:\n{self.log.read_text()[-3000:]}")
        mails = list(self.sink.sink.received)
        found = [m for m in mails if subject_part in str(m.message["Subject"])]
        return found if len(found) >= at_least else None


@contextmanager
def mailer(database_url: str, secret_key: str, folder: Path) -> Iterator[Mailer]:
    """aiosmtpd and a worker sending the outbox of `database_url` to it."""
    sink = SmtpServer().start()
    env = clean_env(
        RUNDRUF_DATABASE_URL=database_url,
        RUNDRUF_SECRET_KEY=secret_key,
        RUNDRUF_SMTP_PORT=str(sink.port),
        RUNDRUF_MAIL_FROM="Rundruf <rundruf@rundruf.test>",
        RUNDRUF_MAIL_SWEEP_SECONDS="1",
        RUNDRUF_WORKER_STATE_DIR=str(folder / "worker"),
    )
    log = folder / "worker.log"
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [*RUNDRUF, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield Mailer(sink, worker, log)
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        sink.stop()
