"""Staying registered at the PBX, and what the agent knows about it for the health report.

The agent registers as soon as it starts, long before the first alarm, and then
registers again every `check_s` seconds, or earlier to beat the granted expiry
(`refresh_in`). The repeated REGISTER is the keep-alive: it proves that the PBX
answers and still accepts our user, which an OPTIONS ping would not
(docs/decisions/sip-registration.md). A failure is retried after a second, then with
a growing pause, and stays in the status with its code until a registration succeeds.

Error codes (the central service turns them into words, `params` fill them in):

- `refused` {status, reason}: the registrar said no (403, 404, 503, …);
- `credentialsRefused` {status}: challenged again after our credentials (401/407);
- `notGranted` {requested}: the registrar said yes, but for 0 seconds;
- `timeout` {seconds}: no final answer within 64 x T1;
- `challengeUnsupported`: a digest challenge we cannot answer;
- `network`: the request could not be sent (no route, no socket);
- `unresolvable` {host}: the PBX's host name does not resolve (or not in time);
- `localAddress` {address}: RUNDRUF_AGENT_SIP_LOCAL_HOST is no address a PBX can reach;
- `connectFailed` {host, port, reason}: no connection to the PBX (TLS: nothing at its port);
- `tlsCertificate` {host, reason}: the PBX's TLS certificate is not trusted or does not
  name the configured host (docs/decisions/sip-tls.md; never a fall-back to TCP or UDP);
- `tlsClientCertificate` {host, reason}: the PBX refuses our client certificate, or
  wants one and none is configured;
- `tlsHandshake` {host, reason}: the TLS handshake failed otherwise (or not in time);
- `tlsConfig` {setting, file}: a CA, certificate or key file cannot be used;
- `connectionLost` {host, port, reason}: the TLS connection to the PBX broke as the
  REGISTER waited for it (it is made again at once, and the REGISTER sent again);
- `internal`: a fault of ours. The agent's log has the traceback; the report carries
  the code only (it reaches the customer's mail, where a Python name helps nobody).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge_agent.error_text import redact
from edge_agent.sip import ua
from edge_agent.sip.errors import DigestError, SipError
from edge_agent.sip.tls import TransportFailure

log = logging.getLogger(__name__)

DETAIL_MAX = 200  # the server refuses more; the words come from the code anyway
RETRY_FIRST_S = 1.0
# The shortest pause between two REGISTERs. A registrar granting less than this is
# refreshed every MIN_REFRESH_S all the same: at most 12 challenged REGISTERs a minute,
# nothing for a PBX, instead of one a second. Also the smallest check interval allowed.
MIN_REFRESH_S = 5.0
TIMEOUT_MARGIN_S = 2.0  # beyond the REGISTER's own timeout, for the answer's way back


def _now() -> datetime:
    return datetime.now(UTC)


def printable(text: str, limit: int) -> str:
    """One line of printable characters, at most `limit`: the server refuses anything else,
    and a refused report would cost the heartbeat."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:limit]


class RegistrationState(enum.StrEnum):
    REGISTERING = "registering"  # started, no final answer yet
    REGISTERED = "registered"
    FAILED = "failed"
    DISABLED = "disabled"  # RUNDRUF_AGENT_SIP_REGISTER=false: calls go out unregistered


@dataclass(frozen=True)
class RegistrationError:
    """Why the last registration failed: a code, its parameters and a bounded detail."""

    code: str
    at: datetime
    params: Mapping[str, str | int] = field(default_factory=dict)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        params = {k: printable(v, 100) if isinstance(v, str) else v for k, v in self.params.items()}
        return {
            "code": self.code,
            "params": params,
            "detail": printable(self.detail, DETAIL_MAX),
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class RegistrationStatus:
    state: RegistrationState
    since: datetime  # when it entered this state
    last_error: RegistrationError | None = None  # kept after a later success

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "since": self.since.isoformat(),
            "lastError": self.last_error.to_json() if self.last_error else None,
        }


def error_of(exc: BaseException, at: datetime, hide: Iterable[object] = ()) -> RegistrationError:
    """The code and parameters for what a registration attempt raised; `hide`: the
    values the detail must not show (the SIP password), hidden before it is cut."""
    detail = redact(str(exc), hide, DETAIL_MAX)
    if isinstance(exc, ua.RegistrationRefused):
        if exc.challenged and exc.status in (401, 407):
            return RegistrationError("credentialsRefused", at, {"status": exc.status}, detail)
        reason = printable(exc.reason, 60)
        return RegistrationError("refused", at, {"status": exc.status, "reason": reason}, detail)
    if isinstance(exc, ua.RegistrationNotGranted):
        return RegistrationError("notGranted", at, {"requested": exc.requested}, detail)
    if isinstance(exc, ua.SipTimeout):
        return RegistrationError("timeout", at, {"seconds": round(64 * ua.T1)}, detail)
    if isinstance(exc, DigestError):
        return RegistrationError("challengeUnsupported", at, {}, detail)
    if isinstance(exc, TransportFailure):
        return RegistrationError(exc.code, at, exc.params, detail)
    if isinstance(exc, OSError):
        return RegistrationError("network", at, {}, detail)
    return RegistrationError("internal", at)  # what it was is in the agent's log


def refresh_in(granted_s: int, check_s: float) -> float:
    """Seconds until the next REGISTER: the check interval, or so early that a REGISTER
    which times out (64 x T1, 32 s) is noticed before the granted expiry ends; never
    sooner than MIN_REFRESH_S for the registrar's sake (a grant that short is refreshed
    at that pace); the check interval is the agent's setting, at least 5 s itself."""
    latest = granted_s - 64 * ua.T1 - TIMEOUT_MARGIN_S
    return min(check_s, max(MIN_REFRESH_S, latest))


class Registration:
    """The registration loop and its status.

    `register` sends one REGISTER and returns the granted expiry (the user agent's
    `register_once`). Listeners hear of every change of state or error code.
    """

    def __init__(
        self,
        register: Callable[[], Awaitable[int]],
        *,
        enabled: bool = True,
        check_s: float = 60.0,
        retry_cap_s: float = 60.0,
        clock: Callable[[], datetime] = _now,
        hide: Iterable[object] = (),
    ) -> None:
        self._register = register
        self._hide = tuple(hide)
        self.enabled = enabled
        self.check_s = check_s
        self.retry_cap_s = retry_cap_s
        self._clock = clock
        state = RegistrationState.REGISTERING if enabled else RegistrationState.DISABLED
        self._status = RegistrationStatus(state, clock())
        self._listeners: list[Callable[[], None]] = []
        # The REGISTER on its way: a cancelled loop leaves it to finish (see `settle`).
        self._in_flight: asyncio.Future[int] | None = None
        self._now = asyncio.Event()  # `refresh_now`: the pause ends at once

    @property
    def status(self) -> RegistrationStatus:
        return self._status

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def ready(self) -> None:
        """The transport is up: registering begins now (or stays off)."""
        self._enter(RegistrationState.REGISTERING if self.enabled else RegistrationState.DISABLED)

    def failed(self, error: RegistrationError) -> None:
        self._enter(RegistrationState.FAILED, error)

    def refresh_now(self) -> None:
        """Registers at once, not at the next refresh or retry: the contact changed (a
        TLS connection made again has another port, and the PBX must learn it)."""
        self._now.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._now.wait()

    def _enter(self, state: RegistrationState, error: RegistrationError | None = None) -> None:
        old = self._status
        last_error = error or old.last_error
        since = old.since if state is old.state else self._clock()
        self._status = RegistrationStatus(state, since, last_error)
        changed_code = (error and error.code) != (old.last_error and old.last_error.code)
        if state is not old.state or (error is not None and changed_code):
            for listener in self._listeners:
                listener()

    async def run(self) -> None:
        """Registers, refreshes and retries until cancelled; nothing when disabled."""
        if not self.enabled:
            return
        delay = RETRY_FIRST_S
        while True:
            try:
                self._in_flight = asyncio.ensure_future(self._register())
                granted = await asyncio.shield(self._in_flight)
            except asyncio.CancelledError:
                raise
            except (SipError, OSError) as exc:
                self._retry_later(exc, delay)
            except Exception as exc:  # a fault of ours must not end the registration
                log.exception("registration failed unexpectedly")
                self._retry_later(exc, delay)
            else:
                self._enter(RegistrationState.REGISTERED)
                delay = RETRY_FIRST_S
                # What was asked for before this REGISTER succeeded is done: it went out
                # with the contact as it is now (`ua.register_once`).
                self._now.clear()
                await self._pause(refresh_in(granted, self.check_s))
                self._now.clear()
                continue
            await self._pause(delay)
            self._now.clear()
            delay = min(delay * 2, self.retry_cap_s)

    async def settle(self, seconds: float) -> None:
        """Waits up to `seconds` for the REGISTER on its way (the loop is cancelled
        first): a UA sends no new REGISTER before the last one has its final answer
        or has timed out (RFC 3261 10.2), the de-registration included."""
        pending = self._in_flight
        if pending is None or pending.done():
            return
        await asyncio.wait({pending}, timeout=seconds)
        if not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)

    def _retry_later(self, exc: BaseException, delay: float) -> None:
        log.warning("SIP registration failed: %s; again in %.0f s", exc, delay)
        self.failed(error_of(exc, self._clock(), self._hide))
