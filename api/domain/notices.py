"""Notices from the PBX host and the mails that tell the tenant of them.

``wrongPins`` comes from the call routing (10 wrong PINs for one group);
``jobFileDamaged`` from the job service, whose file of an accepted alarm could not be
read at its start (quarantined there): the alarm was never run, and the tenant and
support are told, and the history shows a failed trigger (FAILURE_JOB_FILE_DAMAGED);
its checks and mails are in damaged_jobs.py.

Plain Python: the checks of a notice and the mail text in a language.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from api.domain import validation
from api.errors import BadInput
from api.models.enums import Language

WRONG_PINS = "wrongPins"
JOB_FILE_DAMAGED = "jobFileDamaged"
KINDS = {WRONG_PINS, JOB_FILE_DAMAGED}
# The code the history and the website word a failed trigger by.
FAILURE_JOB_FILE_DAMAGED = "JOB_FILE_DAMAGED"
COUNT_MAX = 10_000
TEXT_MAX = 64
# Rundruf serves SwyxWare sites in German-speaking countries; all keep this time.
MAIL_ZONE = ZoneInfo("Europe/Berlin")
_ZONE_DE = {"CET": "MEZ", "CEST": "MESZ"}


@dataclass(frozen=True)
class Notice:
    notice_id: str
    kind: str
    agent_number: str | None
    caller_number: str | None
    count: int
    at: datetime
    # jobFileDamaged: the quarantined file's name at the job service, and the mode the
    # damaged file still showed (None when unknown).
    file_name: str | None = None
    mode: int | None = None
    # False when the reported time could not be used and `at` is when it was reported.
    at_known: bool = True


def checked(notice: Notice, now: datetime) -> Notice:
    """The notice with its numbers trimmed (empty ones as None); BadInput otherwise.
    `now`: the server's clock, which bounds the notice's time (validation.moment)."""
    if not notice.notice_id:
        raise BadInput(f"1 to {TEXT_MAX} printable characters", field="noticeId")
    validation.printable(notice.notice_id, "noticeId", TEXT_MAX)
    if notice.kind not in KINDS:
        raise BadInput(f"unknown notice kind {notice.kind[:TEXT_MAX]!r}", field="kind")
    validation.in_range(notice.count, 1, COUNT_MAX, "count")
    file_name = _number(notice.file_name, "fileName")
    if notice.kind == JOB_FILE_DAMAGED and file_name is None:
        raise BadInput("the quarantined file's name is required", field="fileName")
    if notice.mode is not None:
        validation.in_range(notice.mode, 1, 3, "mode")
    return Notice(
        notice_id=notice.notice_id,
        kind=notice.kind,
        agent_number=_number(notice.agent_number, "agentNumber"),
        caller_number=_number(notice.caller_number, "callerNumber"),
        count=notice.count,
        at=validation.moment(notice.at, "at", now),
        file_name=file_name if notice.kind == JOB_FILE_DAMAGED else None,
        mode=notice.mode if notice.kind == JOB_FILE_DAMAGED else None,
    )


def _number(value: str | None, field: str) -> str | None:
    # Both go into a mail's subject or body: one printable line, nothing long.
    if value is None or not value.strip():
        return None
    return validation.printable(value.strip(), field, TEXT_MAX)


@dataclass(frozen=True)
class Mail:
    subject: str
    body: str


def when_text(language: Language, at: datetime) -> str:
    local = at.astimezone(MAIL_ZONE)
    zone = local.tzname() or ""
    if language is Language.DE:
        return f"{local:%d.%m.%Y um %H:%M} Uhr ({_ZONE_DE.get(zone, zone)})"
    return f"{local:%Y-%m-%d at %H:%M} ({zone})"


def wrong_pins_mail(language: Language, notice: Notice, group_name: str | None) -> Mail:
    if language is Language.DE:
        return _german(notice, group_name, when_text(language, notice.at))
    return _english(notice, group_name, when_text(language, notice.at))


def _german(notice: Notice, group_name: str | None, when: str) -> Mail:
    number = f" für die Rundrufnummer {notice.agent_number}" if notice.agent_number else ""
    group = f" (Gruppe „{group_name}“)" if group_name else ""
    caller = (
        f"von der Rufnummer {notice.caller_number}"
        if notice.caller_number
        else "von einer unterdrückten Rufnummer"
    )
    body = (
        "Guten Tag,\n\n"
        f"{notice.count} falsche PINs wurden innerhalb kurzer Zeit{number}{group} eingegeben. "
        f"Die letzte kam {caller}, am {when}.\n\n"
        "Die Gruppe wird dadurch nie gesperrt: Mit der richtigen PIN startet der Rundruf "
        "weiterhin sofort. Wer eine falsche PIN eingibt, muss nur länger warten, bis er es "
        "erneut versuchen kann.\n\n"
        "Kennen Sie diese Anrufe nicht, ändern Sie bitte die PIN der Gruppe auf der "
        "Rundruf-Website.\n\n"
        "Ihr Rundruf\n"
    )
    return Mail(subject=f"Rundruf: {notice.count} falsche PINs{number}", body=body)


def _english(notice: Notice, group_name: str | None, when: str) -> Mail:
    number = f" for broadcast number {notice.agent_number}" if notice.agent_number else ""
    group = f' (group "{group_name}")' if group_name else ""
    caller = (
        f"from the number {notice.caller_number}"
        if notice.caller_number
        else "from a withheld number"
    )
    body = (
        "Hello,\n\n"
        f"{notice.count} wrong PINs were entered within a short time{number}{group}. "
        f"The last one came {caller}, on {when}.\n\n"
        "The group is never locked by this: the right PIN still starts the broadcast at "
        "once. Whoever enters a wrong PIN only has to wait longer before trying again.\n\n"
        "If you do not know these calls, please change the group's PIN on the Rundruf "
        "website.\n\n"
        "Rundruf\n"
    )
    return Mail(subject=f"Rundruf: {notice.count} wrong PINs{number}", body=body)
