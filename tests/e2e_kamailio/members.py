"""The members behind Kamailio: SIPp answering for many extensions at once, baresip as a
real phone that records what it hears and presses 1, and a call between two members
that keeps them busy.

Members are registered at Kamailio by a third-party REGISTER from the test
(`Kamailio.register(extension, contact)`): SIPp and baresip listen where the bed starts
them, and the registrar routes each extension to its contact, as it would for a phone
registering itself. Leaving the `with` de-registers them (Expires: 0), so that the next
test's members are the only contacts of an extension.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

from tests.processes import wait_until
from tests.sip.bed import HOST, Baresip, SippUas, need_baresip, need_sipp
from tests.sip.kamailio import Kamailio
from tests.sip.lifetime import Started


class Registered:
    """Extensions registered at Kamailio for one contact host:port, until the `with` ends."""

    def __init__(self, pbx: Kamailio, extensions: Iterable[str], port: int) -> None:
        self.pbx = pbx
        self.extensions = list(extensions)
        self.port = port

    def contact(self, extension: str) -> str:
        return f"sip:{extension}@{HOST}:{self.port}"

    def register(self) -> None:
        for extension in self.extensions:
            self.pbx.register(extension, self.contact(extension))

    def unregister(self) -> None:
        for extension in self.extensions:
            with contextlib.suppress(Exception):  # Kamailio may be gone with the test
                self.pbx.register(extension, self.contact(extension), expires=0)


class SippMembers(Started):
    """One SIPp answering the calls to `extensions` (`calls` in all, default one each):
    kam_uas_dtmf_info.xml rings, answers, presses 1 after a second as SIP INFO (as SwyxWare
    relays it) and waits for the agent's BYE; all calls at once if need be."""

    def __init__(
        self,
        tmp_path: Path,
        pbx: Kamailio,
        extensions: Iterable[str],
        *,
        scenario: str = "kam_uas_dtmf_info.xml",
        calls: int | None = None,
        timeout: float = 90,
    ) -> None:
        need_sipp()
        self.extensions = list(extensions)
        self.sipp = SippUas(
            scenario, tmp_path, calls=calls or len(self.extensions), timeout=timeout
        )
        self.registered = Registered(pbx, self.extensions, self.sipp.port)

    def start(self) -> Self:
        self.sipp.start()
        try:
            self.registered.register()
        except BaseException:
            self.sipp.stop()
            raise
        return self

    def stop(self) -> None:
        self.registered.unregister()
        self.sipp.stop()


class BaresipMember(Baresip):
    """baresip as the phone of `extension`: auto-answers, records what it hears, and
    `confirm_after` seconds after each call is established presses 1 (RFC 4733, its
    `sndcode` command); None never presses. Watches its ctrl_tcp events for calls."""

    def __init__(
        self, tmp_path: Path, pbx: Kamailio, extension: str, confirm_after: float | None = 1.0
    ) -> None:
        need_baresip()
        super().__init__(tmp_path, user=extension)
        self.extension = extension
        self.confirm_after = confirm_after
        self.registered: Registered | None = None
        self.pbx = pbx
        self.established: list[float] = []  # time.time() of each established call
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> Self:
        super().start()
        self.registered = Registered(self.pbx, [self.extension], self.port)
        self.registered.register()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> int | None:
        self._stop.set()
        if self.registered is not None:
            self.registered.unregister()
        if self._watcher is not None:
            self._watcher.join(3)
        return super().stop()

    def _watch(self) -> None:
        """ctrl_tcp's events (netstrings of JSON); 1 pressed after each CALL_ESTABLISHED."""
        with socket.create_connection((HOST, self.control_port), timeout=5) as events:
            events.settimeout(0.2)
            buffer = b""
            while not self._stop.is_set():
                try:
                    chunk = events.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                while b":" in buffer:
                    size, _, rest = buffer.partition(b":")
                    if len(rest) < int(size) + 1:
                        break
                    body, buffer = rest[: int(size)], rest[int(size) + 1 :]
                    with contextlib.suppress(ValueError):
                        self._event(json.loads(body))

    def _event(self, message: dict[str, object]) -> None:
        if not message.get("event") or message.get("type") != "CALL_ESTABLISHED":
            return
        self.established.append(time.time())
        if self.confirm_after is not None:
            timer = threading.Timer(self.confirm_after, self._press_one)
            timer.daemon = True
            timer.start()

    def _press_one(self) -> None:
        if not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.command("sndcode", "1")

    def wait_established(self, count: int = 1, timeout: float = 30) -> None:
        wait_until(
            lambda: len(self.established) >= count, timeout, f"{count} call(s) at {self.uri}"
        )
