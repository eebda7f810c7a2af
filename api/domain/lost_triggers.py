"""A `triggerBroadcast` the agent never took up before it expired: the mail that says so.

The broadcast was asked for on the website (or through the API) while the
tenant's agent was not reachable, and stayed so until the command's expiry.
Nobody was called. The history shows a failed trigger (FAILURE_AGENT_UNREACHABLE,
worded by the website) and the tenant gets this mail. Plain Python.
"""

from __future__ import annotations

from datetime import datetime

from api.domain.notices import Mail, when_text
from api.models.enums import Language

# The code the history and the website word a trigger lost this way by.
FAILURE_AGENT_UNREACHABLE = "AGENT_UNREACHABLE"
# What the agent answers a command it received after its expiry (edge_agent/service.py).
AGENT_EXPIRED_CODE = "commandExpired"


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
    if language is Language.DE:
        kind = "Alarm" if alarm else "Probealarm"
        by = f" von {requested_by}" if requested_by else ""
        seen = (
            f"Der Rundruf-Dienst hat sich zuletzt am {when_text(language, last_seen)} gemeldet."
            if last_seen
            else "Der Rundruf-Dienst hat sich noch nie gemeldet."
        )
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
    kind = "alarm" if alarm else "test broadcast"
    by = f" by {requested_by}" if requested_by else ""
    seen = (
        f"The Rundruf service last reported on {when_text(language, last_seen)}."
        if last_seen
        else "The Rundruf service has never reported."
    )
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
