"""TLS for the SIP test bed: certificates made per test, baresip over TLS, and TLS peers
of the test's own on loopback.

- `Authority(directory)`: a CA of its own (EC P-256, a day valid); `issue(name, hosts)`
  writes a leaf certificate and its key (PEM) for those IP addresses or DNS names,
  `both()` in one file as baresip reads it.
- `TlsBaresip(tmp_path, certificate, **options)`: `Baresip` with `sip_certificate`;
  baresip 1.0 listens for SIP over TLS on its SIP port + 1 (`tls_port`).
- `PlainWatch(port)`: UDP and TCP listeners on one port that keep whatever arrives
  (nothing may, when TLS fails: no fall-back to plain SIP).
- `TlsPeer(certificate, ...)`: a thread serving TLS on a loopback port, optionally
  requiring a client certificate (and looking at it only when the test says so),
  answering each SIP request with `answer(request)`; it keeps the handshakes' errors,
  the client certificates and the requests it saw.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.sip.message import Request, Response, parse_stream
from tests.sip.bed import HOST, Baresip

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path

    def both(self) -> Path:
        """Certificate and key in one file (baresip's `sip_certificate`)."""
        path = self.cert.with_suffix(".both.pem")
        path.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        return path


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


class Authority:
    """A certificate authority of the test's own."""

    def __init__(self, directory: Path, name: str = "Rundruf Test CA") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        slug = name.lower().replace(" ", "-")
        self.cert = directory / f"{slug}.pem"
        self.cert.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        hosts: tuple[str, ...] = (HOST,),
        *,
        client: bool = False,
        passphrase: bytes | None = None,
    ) -> Pem:
        """A leaf certificate for `hosts` (IP addresses or DNS names) and its key."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + _DAY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        pem = Pem(self.directory / f"{name}.crt.pem", self.directory / f"{name}.key.pem")
        pem.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        pem.key.write_bytes(_key_pem(key, passphrase))
        return pem


class TlsBaresip(Baresip):
    """baresip answering SIP over TLS (as well as UDP and TCP) with `certificate`;
    `Baresip`'s options (SRTP by `mediaenc`) and `command` (a key: "sndcode") as ever."""

    def __init__(self, tmp_path: Path, certificate: Pem, **options: Any) -> None:
        super().__init__(tmp_path, **options)
        self.certificate = certificate

    @property
    def tls_port(self) -> int:
        return self.port + 1  # baresip 1.0: TLS on the SIP port + 1

    def _config(self) -> str:
        return super()._config() + f"sip_certificate\t{self.certificate.both()}\n"


class PlainWatch:
    """UDP and TCP listeners on `port` of loopback, keeping what arrives there."""

    def __init__(self, port: int, *, tcp: bool = True) -> None:
        self.port = port
        self.arrived: list[tuple[str, bytes]] = []
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM) if tcp else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Self:
        try:
            self._udp.bind((HOST, self.port))
            self._udp.settimeout(0.05)
            if self._tcp is not None:
                self._tcp.bind((HOST, self.port))
                self._tcp.listen(16)
                self._tcp.settimeout(0.05)
        except OSError:
            self._close()
            raise
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                data, _ = self._udp.recvfrom(65536)
                self.arrived.append(("udp", data))
            if self._tcp is None:
                continue
            with contextlib.suppress(TimeoutError):
                conn, _ = self._tcp.accept()
                with conn:
                    conn.settimeout(0.5)
                    try:
                        self.arrived.append(("tcp", conn.recv(65536)))
                    except OSError:
                        self.arrived.append(("tcp", b""))  # a connection is an arrival too

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self._close()

    def _close(self) -> None:
        self._udp.close()
        if self._tcp is not None:
            self._tcp.close()


Answer = Callable[[Request], Response | None]
# RFC 8446 4: the handshake's record type and the client's Certificate message.
_HANDSHAKE = 22
_CERTIFICATE = 11


@dataclass
class TlsPeer:
    """A TLS server on loopback (a thread), answering SIP requests with `answer`.

    `first_bytes` records the first bytes of every connection before any TLS (0x16: a
    TLS handshake; anything else: plain text, which the agent must never send)."""

    certificate: Pem
    answer: Answer
    client_ca: Path | None = None  # set: a client certificate signed by it is required
    # Set: the client's certificate is looked at only once this event is set (TLS 1.3:
    # after the client's handshake has ended), so the test decides when the PBX's
    # alert and its close reach the agent.
    check_client_when: threading.Event | None = None
    port: int = 0
    first_bytes: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    client_certificates: list[dict[str, object]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)  # every byte, after TLS

    def __post_init__(self) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(self.certificate.cert), str(self.certificate.key))
        if self.client_ca is not None:
            self._context.load_verify_locations(str(self.client_ca))
            self._context.verify_mode = ssl.CERT_REQUIRED
        if self.check_client_when is not None:
            # OpenSSL calls it with each message read, before acting on it.
            self._context._msg_callback = self._hold_client_certificate  # type: ignore[attr-defined]
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A test may serve another certificate on the same port after this one.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _hold_client_certificate(
        self, conn: object, direction: str, version: Any, kind: int, message: int, data: Any
    ) -> None:
        if direction == "read" and kind == _HANDSHAKE and message == _CERTIFICATE:
            assert self.check_client_when is not None
            self.check_client_when.wait(10)

    def __enter__(self) -> Self:
        self._listener.bind((HOST, self.port))
        self.port = int(self._listener.getsockname()[1])
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self._spawn(self._accept)
        return self

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                self.first_bytes.append(conn.recv(5, socket.MSG_PEEK))
                tls = self._context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return
            with tls:
                peer = tls.getpeercert()
                if peer:
                    self.client_certificates.append(dict(peer))
                self._answer_all(tls)

    def _answer_all(self, tls: ssl.SSLSocket) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                data = tls.recv(65536)
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return
            if not data:
                return
            self.received += data
            buffer += data
            while True:
                buffer = buffer.lstrip(b"\r\n")  # keep-alives (RFC 5626)
                message, buffer = parse_stream(buffer)
                if message is None:
                    break
                if isinstance(message, Request):
                    self.requests.append(message)
                    response = self.answer(message)
                    if response is not None:
                        tls.sendall(bytes(response))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(6)
