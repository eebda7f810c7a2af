"""A `triggerBroadcast` the agent never took up before it expired: the mail that says so.

The broadcast was asked for on the website (or through the API) while the
tenant's agent was not reachable, and stayed so until the command's expiry.
Nobody was called. The history shows a failed trigger (FAILURE_AGENT_UNREACHABLE,
worded by the website) and the tenant gets this mail. One handed to the agent with no
outcome by its expiry is FAILURE_OUTCOME_UNKNOWN, with its own mail. Plain Python.
"""

from __future__ import annotations

from datetime import datetime

from api.domain.notices import Mail, when_text
from api.models.enums import Language

# The code the history and the website word a trigger lost this way by.
FAILURE_AGENT_UNREACHABLE = "AGENT_UNREACHABLE"
# A trigger handed to the agent (DELIVERED) with no outcome by its expiry: the agent may
# have died after taking it (a power cut), or run it and not reported yet. Not "not run".
FAILURE_OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
# What the agent answers a command it received after its expiry (edge_agent/service.py).
AGENT_EXPIRED_CODE = "commandExpired"


def _shared_words(
    language: Language, *, alarm: bool, requested_by: str | None, last_seen: datetime | None
) -> tuple[str, str, str]:
    """What both mails say alike: the kind of broadcast, who asked, when the service last
    reported."""
    if language is Language.DE:
        kind = "Alarm" if alarm else "Probealarm"
        by = f" von {requested_by}" if requested_by else ""
        seen = (
            f"Der Rundruf-Dienst hat sich zuletzt am {when_text(language, last_seen)} gemeldet."
            if last_seen
            else "Der Rundruf-Dienst hat sich noch nie gemeldet."
        )
        return kind, by, seen
    kind = "alarm" if alarm else "test broadcast"
    by = f" by {requested_by}" if requested_by else ""
    seen = (
        f"The Rundruf service last reported on {when_text(language, last_seen)}."
        if last_seen
        else "The Rundruf service has never reported."
    )
    return kind, by, seen


def lost_trigger_mail(
    language: Language,
    *,
    group_name: str,
    alarm: bool,
    requested_at: datetime,
    requested_by: str | None,
    last_seen: datetime | None,
) -> Mail:
    asked = when_text(language, requested_at)
    kind, by, seen = _shared_words(
        language, alarm=alarm, requested_by=requested_by, last_seen=last_seen
    )
    if language is Language.DE:
        body = (
            "Guten Tag,\n\n"
            f"der {kind} für die Gruppe „{group_name}“, ausgelöst am {asked}{by}, wurde "
            "NICHT durchgeführt: Der Rundruf-Dienst (Rundruf Manager Service) beim Kunden "
            f"war bis zum Ablauf des Auftrags nicht erreichbar. {seen} Niemand wurde "
            "angerufen.\n\n"
            "Bitte prüfen Sie, ob der Dienst läuft und mit dem Internet verbunden ist, und "
            "lösen Sie den Rundruf erneut aus, falls er noch nötig ist.\n\n"
            "Ihr Rundruf\n"
        )
        return Mail(subject=f"Rundruf: {kind} „{group_name}“ nicht ausgeführt", body=body)
    body = (
        "Hello,\n\n"
        f'the {kind} for the group "{group_name}", triggered on {asked}{by}, was NOT run: '
        "the Rundruf service (Rundruf Manager Service) at your site could not be reached "
        f"until the request expired. {seen} Nobody was called.\n\n"
        "Please check that the service runs and is connected to the internet, and trigger "
        "the broadcast again if it is still needed.\n\n"
        "Rundruf\n"
    )
    return Mail(subject=f'Rundruf: {kind} "{group_name}" not run', body=body)


def unknown_outcome_mail(
    language: Language,
    *,
    group_name: str,
    alarm: bool,
    requested_at: datetime,
    requested_by: str | None,
    last_seen: datetime | None,
) -> Mail:
    """A trigger handed to the service without an outcome by its expiry: whether anyone
    was called is unknown, and the mail says exactly that (FAILURE_OUTCOME_UNKNOWN)."""
    asked = when_text(language, requested_at)
    kind, by, seen = _shared_words(
        language, alarm=alarm, requested_by=requested_by, last_seen=last_seen
    )
    if language is Language.DE:
        body = (
            "Guten Tag,\n\n"
            f"der {kind} für die Gruppe „{group_name}“, ausgelöst am {asked}{by}, wurde an "
            "den Rundruf-Dienst (Rundruf Manager Service) beim Kunden übergeben, aber bis "
            "zum Ablauf des Auftrags kam keine Rückmeldung. Ob angerufen wurde, ist "
            f"unbekannt. {seen}\n\n"
            "Bitte prüfen Sie, ob der Dienst läuft und mit dem Internet verbunden ist, "
            "fragen Sie bei den Empfängern nach und lösen Sie den Rundruf erneut aus, falls "
            "er noch nötig ist. Meldet der Dienst den Rundruf später als durchgeführt, "
            "zeigt der Verlauf ihn an.\n\n"
            "Ihr Rundruf\n"
        )
        return Mail(subject=f"Rundruf: {kind} „{group_name}“ ohne Rückmeldung", body=body)
    body = (
        "Hello,\n\n"
        f'the {kind} for the group "{group_name}", triggered on {asked}{by}, was handed to '
        "the Rundruf service (Rundruf Manager Service) at your site, but no outcome came "
        "back before the request expired. Whether anybody was called is unknown. "
        f"{seen}\n\n"
        "Please check that the service runs and is connected to the internet, ask the "
        "recipients, and trigger the broadcast again if it is still needed. Should the "
        "service report the broadcast as run later, the history shows it.\n\n"
        "Rundruf\n"
    )
    return Mail(subject=f'Rundruf: {kind} "{group_name}" without an outcome', body=body)
