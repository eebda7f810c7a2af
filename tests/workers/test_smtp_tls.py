"""STARTTLS, TLS from the start and the login, against aiosmtpd with a certificate of our own."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api.models import EmailStatus
from api.runtime import Runtime
from tests.conftest import make_settings
from tests.processes import free_port
from tests.workers.conftest import email_row, mail_settings, queue_mails
from tests.workers.smtp_sink import Sink
from workers.delivery_log import DeliveryLog
from workers.mail import Mailer

USER, PASSWORD = "rundruf", "s3cret-for-tests"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert, key) for 127.0.0.1, self-signed: the test trusts it through SSL_CERT_FILE."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rundruf test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@pytest.fixture
def tls_server(
    certificate: tuple[Path, Path], request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Sink, int]]:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # our CA is the only one trusted
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink, port = Sink(), free_port()
    if request.param == "starttls":
        kwargs: dict[str, Any] = {
            "tls_context": context,
            "require_starttls": True,
            "auth_required": True,
        }
    else:
        # aiosmtpd cannot tell that a connection wrapped from the start is TLS, so it
        # would hide AUTH: offer it without its TLS check (the session is TLS anyway).
        kwargs = {"ssl_context": context, "auth_require_tls": False}
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, authenticator=_authenticate, **kwargs
    )
    controller.start()
    yield sink, port
    controller.stop()


def _mailer(rt: Runtime, port: int, state: Path, **overrides: Any) -> Mailer:
    settings = make_settings(**mail_settings(port, state, **overrides))
    return Mailer(
        Runtime(settings=settings, db=rt.db, box=rt.box, clock=rt.clock), DeliveryLog(state)
    )


@pytest.mark.parametrize(
    ("tls_server", "security"), [("starttls", "starttls"), ("tls", "tls")], indirect=["tls_server"]
)
async def test_it_sends_over_tls_with_a_login(rt: Runtime, tls_server, security, tmp_path: Path):
    sink, port = tls_server
    [mail_id] = await queue_mails(rt, 1)
    mailer = _mailer(
        rt, port, tmp_path, smtp_security=security, smtp_username=USER, smtp_password=PASSWORD
    )

    await mailer.sweep()
    mailer.delivery_log.close()

    row = await email_row(rt, mail_id)
    assert row.status is EmailStatus.SENT
    assert sink.message_ids() == [row.message_id]


@pytest.mark.parametrize("tls_server", ["starttls"], indirect=True)
async def test_a_refused_login_keeps_the_mail_queued_with_the_reason(
    rt: Runtime, tls_server, tmp_path: Path
):
    sink, port = tls_server
    [mail_id] = await queue_mails(rt, 1)
    mailer = _mailer(
        rt, port, tmp_path, smtp_security="starttls", smtp_username=USER, smtp_password="wrong"
    )

    await mailer.sweep()
    mailer.delivery_log.close()

    row = await email_row(rt, mail_id)
    assert row.status is EmailStatus.QUEUED
    # smtplib tries PLAIN (535) then LOGIN, which aiosmtpd leaves unanswered: either way
    # the reason is stored and the mail waits for a fixed login.
    assert row.last_error
    assert sink.received == []


@pytest.mark.parametrize("tls_server", ["starttls"], indirect=True)
async def test_plain_smtp_to_a_server_that_requires_starttls_waits_for_the_settings(
    rt: Runtime, tls_server, tmp_path: Path
):
    sink, port = tls_server
    [mail_id] = await queue_mails(rt, 1)
    mailer = _mailer(rt, port, tmp_path, smtp_security="none")

    await mailer.sweep()
    mailer.delivery_log.close()

    row = await email_row(rt, mail_id)
    assert row.status is EmailStatus.QUEUED
    assert "530" in (row.last_error or "")
    assert sink.received == []
