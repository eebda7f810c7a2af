"""The agent's TLS client context (issue 15 point 9, review point 6 and 9): which PBX
certificates it accepts is the same on every Python, and a renegotiation is refused.

Python 3.13's `ssl.create_default_context` adds VERIFY_X509_STRICT and
VERIFY_X509_PARTIAL_CHAIN; 3.11 adds neither. `client_context` sets both itself: never
strict (Asterisk's ast_tls_cert makes a CA whose basicConstraints is not critical and
leaves without an authority key identifier), partial chains with a CA file (its
intermediate, or the PBX's own certificate, is trusted as it is). The certificates are
the outside reviewer's cases (attack/strict_gen.py), made here on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.sip.tls import TlsConfig, client_context

HOST = "127.0.0.1"
_DAY = datetime.timedelta(days=1)
Key = ec.EllipticCurvePrivateKey


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _certificate(
    subject: str,
    key: Key,
    issuer: str,
    signer: Key,
    *,
    ca: bool,
    critical: bool = True,
    key_usage: bool = True,
    issuer_key_id: bool = True,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + _DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=critical)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if key_usage:
        usage = x509.KeyUsage(True, False, not ca, False, False, ca, ca, False, False)
        builder = builder.add_extension(usage, critical=True)
    if issuer_key_id and signer is not key:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
        builder = builder.add_extension(aki, critical=False)
    if not ca:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))])
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        builder = builder.add_extension(san, False).add_extension(eku, False)
    return builder.sign(signer, hashes.SHA256())


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _case(directory: Path, case: str) -> tuple[Path, Path, Path]:
    """The PBX's chain, its key and the agent's CA file for `case`."""
    root_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    chain: tuple[x509.Certificate, ...]
    if case == "root not critical, no keyUsage":  # an old self-made CA
        root = _certificate(
            "Loose", root_key, "Loose", root_key, ca=True, critical=False, key_usage=False
        )
        chain, trusted = (_certificate("pbx", leaf_key, "Loose", root_key, ca=False),), root
    elif case == "leaf without AKI":  # ast_tls_cert's server certificate
        root = _certificate("Root", root_key, "Root", root_key, ca=True)
        leaf = _certificate("pbx", leaf_key, "Root", root_key, ca=False, issuer_key_id=False)
        chain, trusted = (leaf,), root
    elif case == "intermediate only in the CA file":
        root = _certificate("Root", root_key, "Root", root_key, ca=True)
        middle_key = ec.generate_private_key(ec.SECP256R1())
        middle = _certificate("Issuing", middle_key, "Root", root_key, ca=True)
        chain = (_certificate("pbx", leaf_key, "Issuing", middle_key, ca=False), middle)
        trusted = middle
    else:  # "root in the CA file, the chain sent"
        root = _certificate("Root", root_key, "Root", root_key, ca=True)
        middle_key = ec.generate_private_key(ec.SECP256R1())
        middle = _certificate("Issuing", middle_key, "Root", root_key, ca=True)
        chain = (_certificate("pbx", leaf_key, "Issuing", middle_key, ca=False), middle)
        trusted = root
    paths = directory / "chain.pem", directory / "key.pem", directory / "ca.pem"
    paths[0].write_bytes(_pem(*chain))
    paths[1].write_bytes(_key_pem(leaf_key))
    paths[2].write_bytes(_pem(trusted))
    return paths


def _serve_once(chain: Path, key: Path) -> tuple[int, threading.Thread, socket.socket]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(chain), str(key))
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    listener.settimeout(5)

    def run() -> None:
        try:
            conn, _ = listener.accept()
            with server.wrap_socket(conn, server_side=True):
                pass
        except OSError:  # the agent refused the certificate: the handshake fails here too
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return int(listener.getsockname()[1]), thread, listener


def _handshake(context: ssl.SSLContext, port: int) -> str:
    try:
        with (
            socket.create_connection((HOST, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=HOST),
        ):
            return "accepted"
    except ssl.SSLCertVerificationError as exc:
        return f"refused: {exc.verify_message}"


@pytest.fixture(params=["3.11", "3.13"])
def python_defaults(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The default context of Python 3.11 as it is, and 3.13's flags on top of it."""
    if request.param == "3.13":
        made = ssl.create_default_context

        def like_313(*args: Any, **kwargs: Any) -> ssl.SSLContext:
            context = made(*args, **kwargs)
            context.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
            return context

        monkeypatch.setattr(ssl, "create_default_context", like_313)
    yield request.param


@pytest.mark.parametrize(
    "case",
    [
        "root not critical, no keyUsage",
        "leaf without AKI",
        "intermediate only in the CA file",
        "root in the CA file, the chain sent",
    ],
)
def test_the_pbx_certificates_accepted_do_not_depend_on_the_python_version(
    tmp_path: Path, case: str, python_defaults: str
) -> None:
    chain, key, ca = _case(tmp_path, case)
    port, thread, listener = _serve_once(chain, key)
    try:
        said = _handshake(client_context(TlsConfig(HOST, ca_file=ca)), port)
    finally:
        thread.join(5)
        listener.close()
    assert said == "accepted", (python_defaults, said)


def test_the_flags_are_set_explicitly_and_the_system_store_keeps_full_chains(
    tmp_path: Path, python_defaults: str
) -> None:
    _, _, ca = _case(tmp_path, "leaf without AKI")
    with_file = client_context(TlsConfig(HOST, ca_file=ca))
    system = client_context(TlsConfig(HOST))
    assert not with_file.verify_flags & ssl.VERIFY_X509_STRICT
    assert with_file.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    assert not system.verify_flags & (ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN)


def test_a_pbx_may_not_renegotiate(tmp_path: Path) -> None:
    context = client_context(TlsConfig(HOST))
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
