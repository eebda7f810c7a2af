"""Which SMTP answers are worth a retry (RFC 5321 4.2.1), without a server."""

from __future__ import annotations

import smtplib
import ssl

import pytest

from workers.smtp import classify


@pytest.mark.parametrize(
    ("exc", "permanent", "server_down", "reason"),
    [
        (
            smtplib.SMTPRecipientsRefused({"a@x.test": (550, b"5.1.1 no such user")}),
            True,
            False,
            "recipient refused: 550 5.1.1 no such user",
        ),
        (
            smtplib.SMTPRecipientsRefused({"a@x.test": (452, b"4.2.2 mailbox full")}),
            False,
            False,
            "recipient refused: 452 4.2.2 mailbox full",
        ),
        (
            smtplib.SMTPDataError(554, b"5.7.1 message rejected as spam"),
            True,
            False,
            "SMTPDataError: 554 5.7.1 message rejected as spam",
        ),
        (
            smtplib.SMTPDataError(421, b"4.3.2 shutting down"),
            False,
            True,
            "SMTPDataError: 421 4.3.2 shutting down",
        ),
        (
            smtplib.SMTPSenderRefused(530, b"5.7.0 Must issue a STARTTLS command first", "r@x"),
            False,
            True,
            "sender refused: 530 5.7.0 Must issue a STARTTLS command first",
        ),
        (
            smtplib.SMTPSenderRefused(553, b"5.7.1 Sender address rejected: not owned", "r@x"),
            False,
            True,
            "sender refused: 553 5.7.1 Sender address rejected: not owned",
        ),
        (
            smtplib.SMTPRecipientsRefused({"a@x.test": (554, b"5.7.1 Relay access denied")}),
            False,
            True,
            "relay refused: 554 5.7.1 Relay access denied",
        ),
        (
            smtplib.SMTPRecipientsRefused({"a@x.test": (550, b"5.7.54 Unable to relay")}),
            False,
            True,
            "relay refused: 550 5.7.54 Unable to relay",
        ),
        (
            smtplib.SMTPSenderRefused(451, b"4.3.0 try again", "r@x.test"),
            False,
            False,
            "SMTPSenderRefused: 451 4.3.0 try again",
        ),
        (
            smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"),
            False,
            True,
            "login refused: 535 5.7.8 bad credentials",
        ),
        (
            smtplib.SMTPConnectError(554, b"no service"),
            False,
            True,
            "server refused the session: 554 no service",
        ),
        (
            ConnectionRefusedError(111, "Connection refused"),
            False,
            True,
            "cannot reach the SMTP server: [Errno 111] Connection refused",
        ),
        (TimeoutError("timed out"), False, True, "cannot reach the SMTP server: timed out"),
        (
            ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] verify failed"),
            False,
            True,
            "cannot reach the SMTP server: [SSL: CERTIFICATE_VERIFY_FAILED] verify failed",
        ),
        (
            smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
            False,
            True,
            "connection lost: Connection unexpectedly closed",
        ),
        (
            smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server."),
            False,
            True,
            "server does not match the settings: SMTP AUTH extension not supported by server.",
        ),
        (
            smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."),
            False,
            True,
            "server does not match the settings: STARTTLS extension not supported by server.",
        ),
        (
            smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server"),
            True,
            False,
            "not supported by the server: SMTPUTF8 not supported by server",
        ),
    ],
)
def test_it_tells_permanent_from_temporary_errors(exc, permanent, server_down, reason):
    error = classify(exc)
    assert (error.permanent, error.server_down, error.reason) == (permanent, server_down, reason)
