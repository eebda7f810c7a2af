"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it accepts.

``refuse`` maps a recipient to the reply its RCPT gets (``"550 5.1.1 no such
user"``, ``"451 4.3.0 try later"``), so tests can make the server refuse one
mail for good or for now.
"""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.processes import free_port


@dataclass
class Received:
    message_id: str
    to: list[str]
    message: Message


@dataclass
class Sink:
    refuse: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        with self._lock:
            self.received.append(
                Received(str(message["Message-ID"]), list(envelope.rcpt_tos), message)
            )
        return "250 2.0.0 accepted"

    def message_ids(self) -> list[str]:
        with self._lock:
            return [r.message_id for r in self.received]


class SmtpServer:
    """Starts and stops the sink's server; the port stays the same across restarts."""

    def __init__(self, sink: Sink | None = None, port: int | None = None) -> None:
        self.sink = sink or Sink()
        self.port = port or free_port()
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        self._controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
