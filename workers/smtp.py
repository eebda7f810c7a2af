"""The SMTP server: one connection per batch, and which of its answers are worth a retry.

``smtplib`` blocks; the mailer calls this from a thread. Reply codes follow
RFC 5321 4.2.1: 4yz is a transient failure (try again later), 5yz a permanent
one. Not reaching the server at all (refused, timeout, TLS failure, dropped
connection) is transient too.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import parseaddr

from api.settings import Settings
from workers.errors import DeliveryError

_RELAY_DENIED = re.compile(
    r"\b(unable to relay|relay(ing)? (access )?(denied|not permitted))", re.I
)


def classify(exc: Exception) -> DeliveryError:
    """The delivery error for what smtplib raised: permanent for 5yz, temporary otherwise."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # One recipient per mail, so this is that recipient's answer.
        code, text = next(iter(exc.recipients.values()))
        if 500 <= code < 600 and _RELAY_DENIED.search(_text(text)):
            # "554 5.7.1 Relay access denied": the server will not relay for us (our
            # host, login or relay settings), not a fault of this recipient.
            return DeliveryError(
                f"relay refused: {code} {_text(text)}", permanent=False, server_down=True
            )
        return _coded(code, text, "recipient refused")
    if isinstance(exc, smtplib.SMTPSenderRefused) and 500 <= exc.smtp_code < 600:
        # MAIL FROM refused for good: our sender address or relay settings, the same for
        # every mail. Like a 530, they wait until the settings are fixed or attempts run out.
        return DeliveryError(
            f"sender refused: {exc.smtp_code} {_text(exc.smtp_error)}",
            permanent=False,
            server_down=True,
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # A 535 is permanent for the server, but the fix (our login) is on our side and
        # applies to every mail: keep them queued until it is fixed or the attempts run out.
        return DeliveryError(
            f"login refused: {exc.smtp_code} {_text(exc.smtp_error)}",
            permanent=False,
            server_down=True,
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        if "AUTH" in str(exc) or "STARTTLS" in str(exc):
            # Our settings ask for a login or STARTTLS this server does not offer:
            # every mail fails alike until the settings (or the server) change.
            return DeliveryError(
                f"server does not match the settings: {exc}", permanent=False, server_down=True
            )
        return DeliveryError(f"not supported by the server: {exc}", permanent=True)
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
        # The greeting or HELO was refused: no mail goes through this server now.
        return DeliveryError(
            f"server refused the session: {exc.smtp_code} {_text(exc.smtp_error)}",
            permanent=False,
            server_down=True,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return _coded(exc.smtp_code, exc.smtp_error, type(exc).__name__)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError(f"connection lost: {exc}", permanent=False, server_down=True)
    if isinstance(exc, OSError):
        # Refused, unreachable, timed out, TLS handshake failed (ssl.SSLError is an OSError).
        return DeliveryError(
            f"cannot reach the SMTP server: {exc}", permanent=False, server_down=True
        )
    return DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False, server_down=True)


def _coded(code: int, text: bytes | str, what: str) -> DeliveryError:
    reason = f"{what}: {code} {_text(text)}"
    if code in (421, 530):
        # 421: the server is closing the channel (RFC 5321 3.8). 530: STARTTLS (RFC 3207)
        # or a login (RFC 4954) is required first - our settings, not this mail: every
        # mail would be refused alike, so they wait instead of failing for good.
        return DeliveryError(reason, permanent=False, server_down=True)
    return DeliveryError(reason, permanent=500 <= code < 600)


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return " ".join(text.split())[:500]


class SmtpTransport:
    """Sends messages over one connection, opened on first use and reopened after an error."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: smtplib.SMTP | None = None
        domain = parseaddr(settings.mail_from)[1].rpartition("@")[2]
        # smtplib would ask DNS for our FQDN on every connection; the sender's domain will do.
        self._helo = domain or "localhost"

    def send(self, message: EmailMessage) -> None:
        """Hands the message to the server; DeliveryError when it was not accepted."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._conn.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            error = classify(exc)
            if error.server_down:
                self.close()
            raise error from exc

    def _connect(self) -> smtplib.SMTP:
        s = self._settings
        conn: smtplib.SMTP
        if s.smtp_security == "tls":
            conn = smtplib.SMTP_SSL(
                s.smtp_host,
                s.smtp_port,
                local_hostname=self._helo,
                timeout=s.smtp_timeout_seconds,
                context=ssl.create_default_context(),
            )
        else:
            conn = smtplib.SMTP(
                s.smtp_host, s.smtp_port, local_hostname=self._helo, timeout=s.smtp_timeout_seconds
            )
        try:
            if s.smtp_security == "starttls":
                conn.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                conn.login(s.smtp_username, password)
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(smtplib.SMTPException, OSError):
            conn.quit()
        conn.close()
