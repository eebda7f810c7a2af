"""The demo's workers: a local SMTP sink that prints each mail, and `rundruf worker` beside it.

The worker is the real process on the embedded default (in-process broker, its
own scheduler under a file lock); it sends the outbox to the sink on 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from api.settings import Settings

# The watchdog opens a heartbeat incident after this many of the tenant's poll intervals.
HEARTBEAT_FACTOR = 3


class MailSink:
    """aiosmtpd on a free loopback port; every mail it accepts is printed and kept."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._lock = threading.Lock()
        self.subjects: list[str] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        # aiosmtpd logs every SMTP command at INFO; the demo prints the mails instead.
        logging.getLogger("mail.log").setLevel(logging.WARNING)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        assert isinstance(message, EmailMessage)
        subject = str(message["Subject"])
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        lines = [line for line in text.splitlines() if line.strip()][1:3]
        with self._lock:
            self.subjects.append(subject)
            self._say(f"  ✉ mail to {', '.join(envelope.rcpt_tos)}: {subject}")
            for line in lines:
                self._say(f"      {line[:100]}")
        return "250 OK"

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, fragment: str, seconds: float) -> bool:
        """True once a mail whose subject holds ``fragment`` arrived."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if any(fragment in s for s in self.subjects):
                    return True
            time.sleep(0.2)
        return False


def start_worker(
    settings: Settings, secret_key_file: Path, smtp_port: int, state_dir: Path
) -> subprocess.Popen[bytes]:
    """`rundruf worker` on the demo's database, sweeping every second or two."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDRUF_")}
    env.update(
        RUNDRUF_DATABASE_URL=settings.database_url,
        RUNDRUF_SECRET_KEY_FILE=str(secret_key_file.resolve()),
        RUNDRUF_SMTP_PORT=str(smtp_port),
        RUNDRUF_MAIL_FROM="Rundruf Demo <rundruf@demo.example>",
        RUNDRUF_WORKER_STATE_DIR=str((state_dir / "worker").resolve()),
        RUNDRUF_MAIL_SWEEP_SECONDS="1",
        RUNDRUF_WATCHDOG_SWEEP_SECONDS="2",
        RUNDRUF_TTS_SWEEP_SECONDS="2",
        RUNDRUF_WATCHDOG_HEARTBEAT_FACTOR=str(HEARTBEAT_FACTOR),
        RUNDRUF_LOG_LEVEL="WARNING",
    )
    log = (state_dir / "worker.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
