"""A damaged job file (``jobFileDamaged``): an accepted alarm the job service on the PBX
host could not read at its start, so it never ran. Plain Python: what of the agent's
report is kept, and the mails.

Such a notice is never refused for its content: the file is damaged, and what it still
shows may be odd (a time from 1970, a name too long). Each text is cut to fit, a
time outside the bounds becomes the time of the report (said so in the mail), an
impossible mode becomes unknown. Only an unknown kind is refused, as for any notice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from api.domain import validation
from api.domain.notices import COUNT_MAX, TEXT_MAX, Mail, Notice, when_text
from api.errors import BadInput
from api.models.enums import Language

# Mails per installation and hour; the next one sums up, the rest go to the history only.
MAILS_PER_HOUR = 5
# The folder the job service keeps a reported file in; jobs/… when it could not move it.
REPORTED_FOLDER = "quarantine/reported/"
STUCK_PREFIX = "jobs/"


@dataclass(frozen=True)
class Place:
    """Who is told: the customer (support reads the same text) and the installation."""

    tenant_name: str
    hostname: str | None
    group_name: str | None


def fitted(value: str | None, limit: int = TEXT_MAX) -> str | None:
    """One printable line of at most `limit` characters; None when empty."""
    if value is None or not value.strip():
        return None
    clean = "".join(c if c.isprintable() else "?" for c in value.strip())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def key(notice_id: str) -> str:
    """The notice's key, which is also its history row's agent id (64 characters): as
    sent when it fits, else a hash of it, the same for every repeat."""
    if 0 < len(notice_id) <= TEXT_MAX and notice_id.isprintable():
        return notice_id
    digest = hashlib.sha256(notice_id.encode("utf-8", "surrogatepass")).hexdigest()
    return "sha256-" + digest[:48]


def checked(notice: Notice, now: datetime) -> Notice:
    """The notice as it can be kept; never BadInput (see the module text)."""
    try:
        at, at_known = validation.moment(notice.at, "at", now), True
    except BadInput:  # out of bounds (a zero or bit-flipped file time), or no zone
        at, at_known = now, False
    the_key = key(notice.notice_id)
    return Notice(
        notice_id=the_key,
        kind=notice.kind,
        agent_number=fitted(notice.agent_number),
        caller_number=fitted(notice.caller_number),
        count=min(max(notice.count, 1), COUNT_MAX),
        at=at,
        file_name=fitted(notice.file_name) or the_key,
        mode=notice.mode if notice.mode in (1, 2, 3) else None,
        at_known=at_known,
    )


def _where(notice: Notice, language: Language) -> str:
    name = notice.file_name or ""
    if name.startswith(STUCK_PREFIX):
        if language is Language.DE:
            return (
                "Die Datei konnte nicht verschoben werden und liegt noch im Auftragsordner "
                f"des Dienstes: {name}"
            )
        return f"The file could not be moved and is still in the service's job folder: {name}"
    if language is Language.DE:
        return f"Die Datei ist zur Untersuchung aufbewahrt: {REPORTED_FOLDER}{name}"
    return f"The file is kept for inspection: {REPORTED_FOLDER}{name}"


def _footer(language: Language, place: Place) -> str:
    # As the watchdog's mails: support reads the same text and must know whose it is.
    host = place.hostname or "?"
    if language is Language.DE:
        return f"Kunde: {place.tenant_name}\nInstallation: {host}\n\nIhr Rundruf\n"
    return f"Customer: {place.tenant_name}\nInstallation: {host}\n\nRundruf\n"


def mail(language: Language, notice: Notice, place: Place) -> Mail:
    """The alarm accepted at `notice.at` was never run: its file at the job service on
    the PBX host could not be read. Said plainly, with what to do."""
    when = when_text(language, notice.at)
    host = place.hostname or "?"
    group_name = place.group_name
    if language is Language.DE:
        number = f" für die Rundrufnummer {notice.agent_number}" if notice.agent_number else ""
        group = f" (Gruppe „{group_name}“)" if group_name else ""
        caller = f" von der Rufnummer {notice.caller_number}" if notice.caller_number else ""
        triggered = (
            f"ausgelöst am {when}"
            if notice.at_known
            else f"ausgelöst zu unbekannter Zeit (gemeldet am {when})"
        )
        body = (
            "Guten Tag,\n\n"
            f"ein Rundruf{number}{group}, {triggered}{caller}, wurde NICHT "
            "durchgeführt: Der Auftrag war angenommen, aber seine Datei beim Rundruf-Dienst "
            f"auf der Telefonanlage ({host}) war beim Start des Dienstes beschädigt. "
            "Niemand wurde angerufen.\n\n"
            "Bitte lösen Sie den Rundruf erneut aus, falls er noch nötig ist, und prüfen "
            f"Sie den Datenträger der Telefonanlage. {_where(notice, language)}\n\n"
            + _footer(language, place)
        )
        return Mail(
            subject=f"Rundruf: Alarm{number} nicht ausgeführt (Auftrag beschädigt)", body=body
        )
    number = f" for broadcast number {notice.agent_number}" if notice.agent_number else ""
    group = f' (group "{group_name}")' if group_name else ""
    caller = f" from the number {notice.caller_number}" if notice.caller_number else ""
    triggered = (
        f"triggered on {when}"
        if notice.at_known
        else f"triggered at an unknown time (reported {when})"
    )
    body = (
        "Hello,\n\n"
        f"a broadcast{number}{group}, {triggered}{caller}, was NOT run: the job "
        "was accepted, but its file at the Rundruf job service on the phone system "
        f"({host}) was damaged when the service started. Nobody was called.\n\n"
        "Please trigger the broadcast again if it is still needed, and check the phone "
        f"system's disk. {_where(notice, language)}\n\n" + _footer(language, place)
    )
    return Mail(subject=f"Rundruf: alarm{number} not run (job damaged)", body=body)


def summary_mail(language: Language, notice: Notice, place: Place) -> Mail:
    """Sent instead of the next mail once MAILS_PER_HOUR were sent within an hour: more
    damaged jobs follow; they are in the history, mails resume after the hour."""
    host = place.hostname or "?"
    when = when_text(language, notice.at)
    if language is Language.DE:
        body = (
            "Guten Tag,\n\n"
            f"der Rundruf-Dienst auf der Telefonanlage ({host}) hat innerhalb einer Stunde "
            f"mehr als {MAILS_PER_HOUR} beschädigte Aufträge gemeldet, zuletzt einen vom "
            f"{when}. Keiner davon wurde durchgeführt. Weitere Meldungen dieser Stunde "
            "stehen nur im Verlauf auf der Rundruf-Website (als fehlgeschlagen), ohne "
            "eigene Mail.\n\n"
            "Bitte prüfen Sie den Datenträger der Telefonanlage und lösen Sie nötige "
            "Rundrufe erneut aus.\n\n" + _footer(language, place)
        )
        return Mail(subject="Rundruf: viele Aufträge beschädigt, nicht ausgeführt", body=body)
    body = (
        "Hello,\n\n"
        f"the Rundruf job service on the phone system ({host}) reported more than "
        f"{MAILS_PER_HOUR} damaged jobs within an hour, the last one from {when}. None of "
        "them was run. Further reports this hour are shown in the history on the Rundruf "
        "website (as failed) only, without a mail of their own.\n\n"
        "Please check the phone system's disk and trigger needed broadcasts again.\n\n"
        + _footer(language, place)
    )
    return Mail(subject="Rundruf: many jobs damaged, not run", body=body)
