"""SIP over TLS to the PBX: the TCP stream code (`transport.TcpTransport`) with TLS under it.

docs/decisions/sip-tls.md says why each choice below:

- the PBX's certificate is checked against the configured CA file alone, or, with none,
  the system's trust store (`ssl.create_default_context`: Windows' certificate store,
  OpenSSL's on Linux), and must name the configured PBX host (also sent as SNI when it
  is a name);
- a client certificate (and its key) when configured; an encrypted key is refused,
  never asked for on a console the service does not have;
- one connection to the PBX, made when the dialer starts and reused for every request
  and answer either way; the agent does not listen for TLS, so its Contact names that
  connection's own address and port (`;transport=tls`) for the PBX to reuse it; kept
  alive as TCP's (RFC 5626 pings and TCP keep-alive, `TcpTransport.keep_alive`);
- connecting and the handshake are bounded in time, each on its own;
- a failure is a `TransportFailure` with a code (`registration.py` lists them), never a
  fall-back to TCP or UDP;
- TLS 1.3 refuses a client certificate only after the agent's handshake has ended, by
  an alert the agent may never read (a write meets the PBX's reset first): a connection
  that ends before the PBX said a word after a handshake in which it asked for a client
  certificate is `tlsClientCertificate` too (`HandshakeWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.sip import tcp_options
from edge_agent.sip.errors import SipError
from edge_agent.sip.stream import SipStream
from edge_agent.sip.transport import CONNECT_TIMEOUT_S, Address, Receiver, TcpTransport

log = logging.getLogger(__name__)

DEFAULT_PORT = 5061  # RFC 3261 19.1.2: sips: and SIP over TLS
PLAIN_PORT = 5060
HANDSHAKE_TIMEOUT_S = 10.0
# After a failed connection the next send within this time fails the same way at once:
# an alarm's hundreds of INVITEs must not become hundreds of handshakes with a bad PBX.
RETRY_AFTER_S = 1.0
REASON_MAX = 100  # what a code's parameter may hold (the server refuses more)
# Alerts that say the PBX refused our client certificate, or wanted one we did not send.
_CLIENT_CERTIFICATE_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA")
# RFC 8446 4 (TLS 1.3): the handshake's record type; the PBX asking for our certificate,
# and the session ticket it sends only after it has checked our part of the handshake.
_HANDSHAKE = 22
_CERTIFICATE_REQUEST = 13
_NEW_SESSION_TICKET = 4

Params = dict[str, str | int]


def server_port(transport: str, configured: int | None) -> int:
    """The PBX's port: as configured, but 5061 for TLS when unset or left at 5060 (the
    plain port of an installation switched to TLS); 5060 for UDP and TCP when unset."""
    if transport.upper() == "TLS":
        return DEFAULT_PORT if configured in (None, PLAIN_PORT) else configured
    return PLAIN_PORT if configured is None else configured


@dataclass(frozen=True)
class TlsConfig:
    """How the agent trusts the PBX and shows itself (RUNDRUF_AGENT_SIP_TLS_*)."""

    server_name: str  # the configured PBX host: its certificate must name it
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # the agent's client certificate (PEM), optional
    key_file: Path | None = None  # its key, when not in cert_file
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S


class TransportFailure(SipError):
    """The PBX cannot be reached as configured: a code with its parameters (words on the
    website and in mails) and a text for the log and the call's detail."""

    def __init__(self, code: str, text: str, **params: str | int) -> None:
        super().__init__(text)
        self.code = code
        self.params: Params = {
            k: _bounded(v) if isinstance(v, str) else v for k, v in params.items()
        }


def _bounded(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:REASON_MAX]


def _no_passphrase() -> bytes:
    # Called by OpenSSL only for an encrypted key; without it OpenSSL would ask on a console.
    raise ValueError("the key is encrypted; configure a key without a passphrase")


def client_context(config: TlsConfig) -> ssl.SSLContext:
    """The client side's TLS context; TransportFailure `tlsConfig` when a file cannot be
    used (missing, unreadable, not PEM, an encrypted key)."""
    try:
        cafile = str(config.ca_file) if config.ca_file else None
        # CERT_REQUIRED and check_hostname; a CA file replaces the system's store.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except (OSError, ValueError) as exc:
        raise _config_failure("RUNDRUF_AGENT_SIP_TLS_CA_FILE", config.ca_file, exc) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags = verify_flags(context.verify_flags, ca_file=config.ca_file is not None)
    # A PBX that asks to renegotiate (TLS 1.2) is refused: nothing of ours needs it, and
    # it is where TLS 1.2's renegotiation attacks live.
    context.options |= ssl.OP_NO_RENEGOTIATION
    if config.cert_file is not None:
        key = str(config.key_file) if config.key_file else None
        try:
            context.load_cert_chain(str(config.cert_file), key, password=_no_passphrase)
        except (OSError, ValueError) as exc:
            setting = "RUNDRUF_AGENT_SIP_TLS_" + ("KEY_FILE" if key else "CERT_FILE")
            path = config.key_file if key else config.cert_file
            raise _config_failure(setting, path, exc) from exc
    elif config.key_file is not None:
        raise TransportFailure(
            "tlsConfig",
            "RUNDRUF_AGENT_SIP_TLS_KEY_FILE is set without RUNDRUF_AGENT_SIP_TLS_CERT_FILE",
            setting="RUNDRUF_AGENT_SIP_TLS_CERT_FILE",
            file="",
        )
    return context


def verify_flags(flags: ssl.VerifyFlags, *, ca_file: bool) -> ssl.VerifyFlags:
    """The certificate checks, the same on every Python (3.13's create_default_context
    adds VERIFY_X509_STRICT and VERIFY_X509_PARTIAL_CHAIN, 3.11's neither):

    - never X509_STRICT: it refuses a CA whose basicConstraints is not critical and a
      certificate without an authority key identifier, as Asterisk's ast_tls_cert and
      many a PBX's self-made certificates are; the trust decision (a chain to what is
      trusted, the host name) is the same without it;
    - X509_PARTIAL_CHAIN with a CA file only: what it holds is trusted as it is, an
      intermediate or the PBX's own certificate too; the system's store stays
      anchored at its roots (docs/decisions/sip-tls.md)."""
    flags &= ~ssl.VERIFY_X509_STRICT
    if ca_file:
        return flags | ssl.VERIFY_X509_PARTIAL_CHAIN
    return flags & ~ssl.VERIFY_X509_PARTIAL_CHAIN


def _config_failure(setting: str, path: Path | None, exc: BaseException) -> TransportFailure:
    reason = _reason(exc)
    return TransportFailure(
        "tlsConfig", f"{setting} ({path}) cannot be used: {reason}", setting=setting, file=str(path)
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


def handshake_failure(exc: BaseException, host: str, port: int) -> TransportFailure:
    """The code for what the TLS handshake (or the first read after it) raised."""
    reason = _reason(exc)
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
        if failure.code == "tlsClientCertificate" or not refused_unheard:
            return failure
    elif not refused_unheard:
        return None  # the PBX spoke before: a dropped connection, as over TCP
    ended = _reason(exc) if exc is not None else "closed"
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


def connect_failure(exc: BaseException, host: str, port: int) -> TransportFailure:
    """The code for a TCP connection to the PBX that could not be made."""
    reason = "no answer in time" if isinstance(exc, TimeoutError) else _reason(exc)
    text = f"no connection to the PBX ({host}:{port}): {reason}"
    return TransportFailure("connectFailed", text, host=host, port=port, reason=reason)


class _TlsStream(SipStream):
    """A stream whose bytes come through TLS: the same framing and limits as TCP's."""

    ssl_object: object = None
    tls13 = False
    heard = False  # the PBX sent data on it (a message, a keep-alive's answer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ssl_object = transport.get_extra_info("ssl_object")
        version = getattr(self.ssl_object, "version", None)
        self.tls13 = version is not None and version() == "TLSv1.3"
        owner = self.owner
        assert isinstance(owner, TlsTransport)
        owner.connected(self, transport)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # TLS 1.3 tells of a refused client certificate only after the handshake: the
        # connection is lost with the PBX's alert, or (its reset first) without it.
        owner = self.owner
        assert isinstance(owner, TlsTransport)
        refused_unheard = (
            self.tls13 and not self.heard and owner.handshakes.asked_unanswered(self.ssl_object)
        )
        failure = lost_failure(
            exc, owner.config.server_name, self.peer[1], refused_unheard=refused_unheard
        )
        if failure is not None:
            owner.failed(self.peer, failure)


class TlsTransport(TcpTransport):
    """SIP over TLS to the PBX at `server`; connects out only (see the module's text)."""

    name = "TLS"

    def __init__(
        self,
        receiver: Receiver,
        config: TlsConfig,
        context: ssl.SSLContext,
        *,
        host: str,
        server: Address,
    ) -> None:
        super().__init__(receiver)
        self.config = config
        self.context = context
        self.handshakes = HandshakeWatch()
        self.handshakes.watch(context)
        self.host = host  # the local address connections are made from
        self.server = server
        self._local: Address = (host, 0)
        self._failure: tuple[float, TransportFailure] | None = None  # the last, and when

    @classmethod
    async def open(
        cls, host: str, server: Address, receiver: Receiver, config: TlsConfig
    ) -> TlsTransport:
        """Connects to the PBX at `server` from `host`; raises TransportFailure (nothing
        stays open) when the files, the connection or the handshake fail."""
        # A thread: the files may sit on a slow share, and the loop must not wait for it.
        context = await asyncio.to_thread(client_context, config)
        transport = cls(receiver, config, context, host=host, server=server)
        try:
            await transport._open_connection(server)
        except TransportFailure:
            transport.close()
            raise
        return transport

    @property
    def local(self) -> Address:
        """The address of the connection to the PBX (Via, Contact and SDP name it)."""
        return self._local

    def connected(self, stream: SipStream, transport: asyncio.BaseTransport) -> None:
        if stream.peer == self.server:
            host, port = transport.get_extra_info("sockname")[:2]
            self._local = (str(host), int(port))

    def failed(self, address: Address, failure: TransportFailure) -> None:
        self._failure = (asyncio.get_running_loop().time(), failure)
        self.table.log.log(
            logging.WARNING, "tls-failed", "SIP over TLS to %s:%d: %s", *address, failure
        )
        for listener in list(self.on_failure):
            listener(address, failure)

    async def _open_connection(self, address: Address) -> None:
        """A TCP connection, then the handshake, each bounded; TransportFailure if either
        fails (`TcpTransport._connect` reports it through `_connection_failed`)."""
        loop = asyncio.get_running_loop()
        if self._failure is not None and loop.time() - self._failure[0] < RETRY_AFTER_S:
            raise self._failure[1]
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            tcp_options.keep_alive(sock)
            sock.bind((self.host, 0))
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await loop.sock_connect(sock, address)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise connect_failure(exc, *address) from exc
        except BaseException:  # cancelled: the socket must not stay open
            sock.close()
            raise
        timeout = self.config.handshake_timeout_s
        try:
            # asyncio's own bound aborts a handshake that stalls; ours is the backstop.
            async with asyncio.timeout(timeout + 1.0):
                await loop.create_connection(
                    lambda: _TlsStream(self),
                    sock=sock,
                    ssl=self.context,
                    server_hostname=self.config.server_name,
                    ssl_handshake_timeout=timeout,
                )
        except (OSError, TimeoutError, ValueError) as exc:
            with contextlib.suppress(OSError):
                sock.close()
            raise handshake_failure(exc, self.config.server_name, address[1]) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                sock.close()
            raise

    def _connection_failed(self, address: Address, exc: BaseException) -> None:
        failure = exc if isinstance(exc, TransportFailure) else connect_failure(exc, *address)
        self.failed(address, failure)
