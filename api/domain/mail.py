"""A queued mail as it goes on the wire: headers, the body and a footer in the tenant's language.

Plain Python. The text of each kind of mail is written where its cause is
(``api/domain/notices.py`` for wrong PINs, the watchdog for incidents); this
module only wraps a stored subject and body into a message, the same for all.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from api.models.enums import Language

FOOTER = {
    Language.DE: (
        "-- \n"
        "Diese Nachricht hat Rundruf automatisch gesendet. Antworten auf diese Adresse "
        "liest niemand.\n"
    ),
    Language.EN: (
        "-- \nRundruf sent this message automatically. Nobody reads replies to this address.\n"
    ),
}


def new_message_id(mail_from: str) -> str:
    """A globally unique Message-ID (RFC 5322 3.6.4) in the sender's domain."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{uuid.uuid4().hex}@{domain}>"


def build(
    *,
    mail_from: str,
    to: str,
    subject: str,
    body: str,
    language: Language,
    message_id: str,
    date: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    # RFC 3834: machine-made; autoresponders stay quiet instead of answering.
    message["Auto-Submitted"] = "auto-generated"
    text = body if body.endswith("\n") else body + "\n"
    message.set_content(text + "\n" + FOOTER[language], charset="utf-8")
    # After set_content, which replaces every Content-* header (RFC 3282).
    message["Content-Language"] = language.value
    return message
