"""How the agent trusts the PBX over TLS and shows itself: `TlsConfig`
(RUNDRUF_AGENT_SIP_TLS_*) and the client side's `ssl` context made from it
(docs/decisions/sip-tls.md says why each choice)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from edge_agent.sip.tls_failures import TransportFailure, reason_of

HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TlsConfig:
    """How the agent trusts the PBX and shows itself (RUNDRUF_AGENT_SIP_TLS_*)."""

    server_name: str  # the configured PBX host: its certificate must name it
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # the agent's client certificate (PEM), optional
    key_file: Path | None = None  # its key, when not in cert_file
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S


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
    reason = reason_of(exc)
    return TransportFailure(
        "tlsConfig", f"{setting} ({path}) cannot be used: {reason}", setting=setting, file=str(path)
    )
