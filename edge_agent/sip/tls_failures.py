"""What goes wrong between the agent and its PBX over TLS, as codes: `TransportFailure`
(a code, its parameters, a text for the log) and the functions that tell which code an
error is (`registration.py` lists the codes; the website and the mails word them).

`HandshakeWatch` sees what the PBX said in a TLS 1.3 handshake that `ssl` has no call
for (whether it asked for a client certificate), which tells a refused certificate from
a dropped connection when the PBX's alert is lost (docs/decisions/sip-tls.md).
"""

from __future__ import annotations

import ssl
import weakref
from typing import Any

from edge_agent.sip.errors import SipError

REASON_MAX = 100  # what a code's parameter may hold (the server refuses more)
# Alerts that say the PBX refused our client certificate, or wanted one we did not send.
_CLIENT_CERTIFICATE_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA")
# RFC 8446 4 (TLS 1.3): the handshake's record type; the PBX asking for our certificate,
# and the session ticket it sends only after it has checked our part of the handshake.
_HANDSHAKE = 22
_CERTIFICATE_REQUEST = 13
_NEW_SESSION_TICKET = 4

Params = dict[str, str | int]


class TransportFailure(SipError):
    """The PBX cannot be reached as configured: a code with its parameters (words on the
    website and in mails) and a text for the log and the call's detail. `sent`: the
    request left on a connection that was lost before its answer (the PBX may have it)."""

    def __init__(self, code: str, text: str, *, sent: bool = False, **params: str | int) -> None:
        super().__init__(text)
        self.code = code
        self.sent = sent
        self.params: Params = {
            k: _bounded(v) if isinstance(v, str) else v for k, v in params.items()
        }


def _bounded(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:REASON_MAX]


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


def handshake_failure(exc: BaseException, host: str, port: int) -> TransportFailure:
    """The code for what the TLS handshake (or the first read after it) raised."""
    reason = reason_of(exc)
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = f"the PBX's TLS certificate ({where}) is not accepted: {reason}"
        return TransportFailure("tlsCertificate", text, host=host, reason=reason)
    if isinstance(exc, ssl.SSLError) and any(a in reason for a in _CLIENT_CERTIFICATE_ALERTS):
        text = f"the PBX ({where}) refuses the agent's TLS client certificate: {reason}"
        return TransportFailure("tlsClientCertificate", text, host=host, reason=reason)
    if isinstance(exc, TimeoutError):  # our backstop; asyncio's own bound aborts with text
        reason = "no TLS handshake in time"
    text = f"the TLS handshake with the PBX ({where}) failed: {reason}"
    return TransportFailure("tlsHandshake", text, host=host, reason=reason)


def lost_failure(
    exc: BaseException | None, host: str, port: int, *, refused_unheard: bool
) -> TransportFailure | None:
    """The code for a connection to the PBX that ended with `exc` (None: closed), or
    None when there is nothing to say (the next send connects again).

    `refused_unheard`: TLS 1.3, the PBX asked for a client certificate, and the
    connection ended before the PBX said anything after the handshake. The PBX checks
    our certificate only then, and its alert (116, "certificate required") may never
    be read: when our first write comes after the reset of its close (our last
    handshake message still unread there), the write fails with "connection reset"
    and the alert is lost with the connection (on Windows a reset discards it anyway).
    Nothing else ends a TLS 1.3 connection at that point of the handshake."""
    if isinstance(exc, ssl.SSLError):
        failure = handshake_failure(exc, host, port)
        if failure.code == "tlsClientCertificate":
            return failure
        # A record that does not decrypt, or is too long, after the handshake: a broken
        # connection, made again, never a refused handshake (the outside review, point 3).
    if not refused_unheard:
        return None  # the PBX spoke before: a dropped connection, as over TCP
    ended = reason_of(exc) if exc is not None else "closed"
    reason = f"{ended} after the TLS 1.3 handshake that asked for a client certificate"
    text = f"the PBX ({host}:{port}) refuses the agent's TLS client certificate: {reason}"
    return TransportFailure("tlsClientCertificate", text, host=host, reason=reason)


class HandshakeWatch:
    """What the PBX said in each TLS connection's handshake that `ssl` has no call for:
    whether it asked for a client certificate, and whether it sent a session ticket
    after our part of the handshake (it accepted that part, our certificate included).

    Read through the context's message callback (`SSLContext._msg_callback`, CPython's
    hook since 3.8; it sees the handshake's messages, not the data). Without it nothing
    is known, and a refusal whose alert is lost ends the connection unexplained."""

    def __init__(self) -> None:
        self._asked: weakref.WeakSet[object] = weakref.WeakSet()
        self._accepted: weakref.WeakSet[object] = weakref.WeakSet()

    def watch(self, context: ssl.SSLContext) -> None:
        if hasattr(context, "_msg_callback"):
            context._msg_callback = self._message

    def _message(
        self, conn: object, direction: str, version: Any, kind: int, message: int, data: Any
    ) -> None:
        # Called by OpenSSL for every record and handshake message, on the loop: short.
        if direction != "read" or kind != _HANDSHAKE:
            return
        if message == _CERTIFICATE_REQUEST:
            self._asked.add(conn)
        elif message == _NEW_SESSION_TICKET:
            self._accepted.add(conn)

    def asked_unanswered(self, ssl_object: object) -> bool:
        """The PBX asked this connection for a client certificate and sent no ticket."""
        return ssl_object in self._asked and ssl_object not in self._accepted


def lost_connection(
    exc: BaseException | None, host: str, port: int, *, sent: bool = True
) -> TransportFailure:
    """`connectionLost` {host, port, reason}: the connection to the PBX ended (a reset,
    a close, a TLS record that does not decrypt or is too large) after the handshake.
    For the INVITEs that went out on it: their answers cannot come back to us (the agent
    does not listen for TLS), the PBX may still ring (`sent`: they are CANCELled)."""
    reason = reason_of(exc) if exc is not None else "closed by the PBX"
    text = f"the TLS connection to the PBX ({host}:{port}) was lost: {reason}"
    return TransportFailure("connectionLost", text, sent=sent, host=host, port=port, reason=reason)


def connect_failure(exc: BaseException, host: str, port: int) -> TransportFailure:
    """The code for a TCP connection to the PBX that could not be made."""
    reason = "no answer in time" if isinstance(exc, TimeoutError) else reason_of(exc)
    text = f"no connection to the PBX ({host}:{port}): {reason}"
    return TransportFailure("connectFailed", text, host=host, port=port, reason=reason)
