"""What the watchdog judges and what its mails say (plain Python, no I/O).

An installation is judged from what its agent last reported: a heartbeat older
than k poll intervals is an incident of its own; while it lasts, the health
flags are stale and prove nothing, so their incidents neither open nor close.
A flag that is unknown (None: no job service configured, a simulated dialer, an
agent too old to say) is no failure, and no recovery either: an incident of it
that is open closes as "no longer watched", never as "resolved".

A failed SIP registration is told only once it has lasted NOTICE_GRACE on the
server's clock (docs/decisions/sip-registration.md): a boot whose DNS is not ready
yet, or a blip of the network, mails nobody.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from api.domain.connection import silent
from api.domain.health import SipError, describe_sip_error
from api.domain.notices import MAIL_ZONE, Mail
from api.models.enums import DialerKind, IncidentKind, Language, SipRegistrationState

INSTALLATION_KINDS = (
    IncidentKind.HEARTBEAT_MISSED,
    IncidentKind.PBX_UNREACHABLE,
    IncidentKind.JOBSERVICE_UNREACHABLE,
    IncidentKind.ALARM_SERVICE_FAILED,
    IncidentKind.SIP_REGISTRATION_FAILED,
    IncidentKind.JOURNAL_NOT_WRITABLE,
)
FLAG_KINDS = INSTALLATION_KINDS[1:]
_ZONE_DE = {"CET": "MEZ", "CEST": "MESZ"}
# How long a failure must last (from the sweep that first saw it) before anybody is
# told; kinds not named are told at once.
NOTICE_GRACE = {IncidentKind.SIP_REGISTRATION_FAILED: timedelta(minutes=2)}


@dataclass(frozen=True)
class Reported:
    """What an installation's agent last told the central service."""

    last_heartbeat_at: datetime | None
    enrolled_at: datetime
    pbx_reachable: bool | None
    jobservice_reachable: bool | None
    alarm_service_ok: bool | None
    # None: a simulated dialer, or an agent that does not report it (no failure).
    sip_registration: SipRegistrationState | None = None
    dialer: DialerKind | None = None
    journal_writable: bool | None = None  # None: an agent that does not report it


@dataclass(frozen=True)
class Verdict:
    failing: frozenset[IncidentKind]
    # The kinds this verdict speaks about: only these may open or close as resolved.
    judged: frozenset[IncidentKind]
    # Kinds that cannot be judged any more (the flag is unknown now): an open incident
    # of them closes as "no longer watched".
    moot: frozenset[IncidentKind] = frozenset()


def overdue(reported: Reported, now: datetime, poll_seconds: int, factor: int) -> bool:
    """No heartbeat (or, never one, no enrolment) within ``factor`` poll intervals.

    The website's "not connected" is the same measure with two intervals
    (``api.domain.connection``); mails wait for ``factor`` of them.
    """
    last = reported.last_heartbeat_at or reported.enrolled_at
    return silent(last, now, poll_seconds, factor)


def judge(reported: Reported, now: datetime, poll_seconds: int, factor: int) -> Verdict:
    if overdue(reported, now, poll_seconds, factor):
        missed = frozenset({IncidentKind.HEARTBEAT_MISSED})
        return Verdict(failing=missed, judged=missed)
    flags = {
        IncidentKind.PBX_UNREACHABLE: reported.pbx_reachable,
        IncidentKind.JOBSERVICE_UNREACHABLE: reported.jobservice_reachable,
        IncidentKind.ALARM_SERVICE_FAILED: reported.alarm_service_ok,
        IncidentKind.SIP_REGISTRATION_FAILED: (
            None
            if reported.sip_registration is None
            else reported.sip_registration is not SipRegistrationState.FAILED
        ),
        IncidentKind.JOURNAL_NOT_WRITABLE: reported.journal_writable,
    }
    return Verdict(
        failing=frozenset(kind for kind, ok in flags.items() if ok is False),
        judged=frozenset(
            [IncidentKind.HEARTBEAT_MISSED, *(kind for kind, ok in flags.items() if ok is not None)]
        ),
        moot=frozenset(kind for kind, ok in flags.items() if ok is None),
    )


def notice_due(kind: IncidentKind, opened_at: datetime, now: datetime) -> bool:
    """Whether a failure seen since `opened_at` (the server's clock) is to be told now."""
    return now - opened_at >= NOTICE_GRACE.get(kind, timedelta(0))


def license_stage(valid_until: datetime, now: datetime, warning_days: list[int]) -> int | None:
    """The notice due now: 0 once expired, else the nearest warning day reached.

    Only the most urgent stage is due, so a license first seen 5 days before its
    end gets the 7-day notice, never a late 30-day one as well.
    """
    left = valid_until - now
    if left <= timedelta(0):
        return 0
    reached = [d for d in warning_days if d > 0 and left <= timedelta(days=d)]
    return min(reached) if reached else None


# --- mails ------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """Who and where, for the mail's text."""

    tenant_name: str
    hostname: str
    # The SwyxWare simulator or simulated calls: every mail says so.
    simulated: bool = False


_WHAT_DE = {
    IncidentKind.HEARTBEAT_MISSED: (
        "Rundruf Manager Service meldet sich nicht",
        "Der Rundruf Manager Service auf {host} meldet sich nicht mehr; die letzte "
        "Meldung kam am {when}.",
        "Bitte prüfen Sie, ob der Rechner läuft, der Dienst gestartet ist und er das "
        "Internet über Port 443 erreicht.",
    ),
    IncidentKind.PBX_UNREACHABLE: (
        "Telefonanlage nicht erreichbar",
        "Der Rundruf Manager Service auf {host} erreicht die Telefonanlage nicht "
        "(gemeldet am {when}).",
        "Bitte prüfen Sie, ob die Telefonanlage läuft und die Anmeldedaten auf der "
        "Rundruf-Website noch gelten.",
    ),
    IncidentKind.JOBSERVICE_UNREACHABLE: (
        "Rundruf-Jobdienst nicht erreichbar",
        "Der Rundruf Manager Service auf {host} erreicht den Rundruf-Jobdienst auf dem "
        "Server der Telefonanlage nicht (gemeldet am {when}). Anrufe bei der "
        "Rundrufnummer können dann keinen Rundruf auslösen.",
        "Bitte prüfen Sie, ob der Dienst „Rundruf Job Service“ dort läuft.",
    ),
    IncidentKind.ALARM_SERVICE_FAILED: (
        "Alarmdienst gestört",
        "Der Rundruf Manager Service auf {host} meldet, dass sein Alarmdienst gestört "
        "ist (gemeldet am {when}).",
        "Bitte starten Sie den Dienst neu; hilft das nicht, wenden Sie sich an den Support.",
    ),
    IncidentKind.SIP_REGISTRATION_FAILED: (
        "SIP-Anmeldung an der Telefonanlage fehlgeschlagen",
        "Der Rundruf Manager Service auf {host} kann sich seit {when} nicht an der "
        "Telefonanlage anmelden. Ohne diese Anmeldung kann er bei einem Alarm niemanden "
        "anrufen.",
        "Bitte prüfen Sie, ob der Benutzer „Rundruf“ in der Telefonanlage besteht, ob "
        "SIP-Benutzer und -Passwort mit den Einstellungen des Dienstes übereinstimmen und "
        "ob die Telefonanlage erreichbar ist.",
    ),
    IncidentKind.JOURNAL_NOT_WRITABLE: (
        "Rundruf-Journal nicht beschreibbar",
        "Der Rundruf Manager Service auf {host} kann sein Journal nicht schreiben "
        "(gemeldet am {when}). Rundrufe laufen aus dem Speicher weiter, kein Anruf bricht "
        "ab. Stoppt der Dienst, bevor das Journal nachgetragen ist, gehen Ergebnisse "
        "verloren, die nur im Speicher standen: ein laufender Alarm wird nach dem Neustart "
        "fortgesetzt oder neu begonnen, und Mitglieder, deren Bestätigung nur im Speicher "
        "stand, werden womöglich erneut angerufen.",
        "Bitte schaffen Sie Platz auf dem Datenträger mit den Daten des Dienstes "
        "(RUNDRUF_AGENT_STATE_DIR) und prüfen Sie, ob er beschreibbar ist; das Journal "
        "wird dann von selbst nachgetragen.",
    ),
}

_WHAT_EN = {
    IncidentKind.HEARTBEAT_MISSED: (
        "Rundruf Manager Service not reporting",
        "The Rundruf Manager Service on {host} has stopped reporting; its last report "
        "came on {when}.",
        "Please check that the computer is running, the service is started and it "
        "reaches the internet on port 443.",
    ),
    IncidentKind.PBX_UNREACHABLE: (
        "phone system unreachable",
        "The Rundruf Manager Service on {host} cannot reach the phone system (reported on {when}).",
        "Please check that the phone system is running and that the login on the "
        "Rundruf website is still valid.",
    ),
    IncidentKind.JOBSERVICE_UNREACHABLE: (
        "Rundruf job service unreachable",
        "The Rundruf Manager Service on {host} cannot reach the Rundruf job service on "
        "the phone system's server (reported on {when}). Calls to a broadcast number "
        "cannot start a broadcast meanwhile.",
        'Please check that the service "Rundruf Job Service" is running there.',
    ),
    IncidentKind.ALARM_SERVICE_FAILED: (
        "alarm service failed",
        "The Rundruf Manager Service on {host} reports that its alarm service has "
        "failed (reported on {when}).",
        "Please restart the service; if that does not help, contact support.",
    ),
    IncidentKind.SIP_REGISTRATION_FAILED: (
        "SIP registration at the phone system failed",
        "The Rundruf Manager Service on {host} has not been able to register at the phone "
        "system since {when}. Without the registration it cannot call anybody in an alarm.",
        'Please check that the user "Rundruf" exists on the phone system, that its SIP '
        "user and password match the service's settings and that the phone system is "
        "reachable.",
    ),
    IncidentKind.JOURNAL_NOT_WRITABLE: (
        "Rundruf journal not writable",
        "The Rundruf Manager Service on {host} cannot write its journal (reported on "
        "{when}). Broadcasts go on from memory, no call is cut off. Should the service "
        "stop before the journal has caught up, results only memory held are lost: a "
        "running alarm is resumed or begun again after the restart, and members whose "
        "confirmation only memory held may be called again.",
        "Please free space on the disk that holds the service's data "
        "(RUNDRUF_AGENT_STATE_DIR) and check that it is writable; the journal then "
        "catches up by itself.",
    ),
}


def when(language: Language, at: datetime) -> str:
    local = at.astimezone(MAIL_ZONE)
    zone = local.tzname() or ""
    if language is Language.DE:
        return f"{local:%d.%m.%Y um %H:%M} Uhr ({_ZONE_DE.get(zone, zone)})"
    return f"{local:%Y-%m-%d at %H:%M} ({zone})"


def _footer(language: Language, tenant_name: str, label: str, value: str) -> str:
    # Support reads the same text: it names the customer and the installation.
    if language is Language.DE:
        return f"Kunde: {tenant_name}\n{label}: {value}\n\nIhr Rundruf\n"
    return f"Customer: {tenant_name}\n{label}: {value}\n\nRundruf\n"


def _site_footer(language: Language, site: Site) -> str:
    return _footer(language, site.tenant_name, "Installation", _host(language, site))


def _simulator(language: Language) -> str:
    return "Simulator" if language is Language.DE else "simulator"


def _host(language: Language, site: Site) -> str:
    return f"{site.hostname} ({_simulator(language)})" if site.simulated else site.hostname


def _subject_site(language: Language, site: Site) -> str:
    """`(Owner AG)`, or `(Owner AG, Simulator)`: a test installation is seen at once."""
    if site.simulated:
        return f"({site.tenant_name}, {_simulator(language)})"
    return f"({site.tenant_name})"


def incident_opened(
    language: Language,
    kind: IncidentKind,
    site: Site,
    since: datetime,
    error: SipError | None = None,
) -> Mail:
    """``since``: the last heartbeat for a missed one, when the registration failed for
    a SIP one, else when the sweep saw it; ``error`` (SIP only) is told in words."""
    german = language is Language.DE
    title, what, advice = (_WHAT_DE if german else _WHAT_EN)[kind]
    sentence = what.format(host=_host(language, site), when=when(language, since))
    if error is not None:
        sentence += "\n\n" + describe_sip_error(language, error)
    where = _subject_site(language, site)
    if german:
        body = (
            f"Guten Tag,\n\n{sentence}\n\nSolange das so ist, können Rundrufe ausfallen. "
            f"{advice}\n\nSobald die Störung behoben ist, bekommen Sie eine weitere "
            f"Nachricht.\n\n{_site_footer(language, site)}"
        )
        return Mail(subject=f"Rundruf-Störung: {title} {where}", body=body)
    body = (
        f"Hello,\n\n{sentence}\n\nWhile this lasts, broadcasts may fail. {advice}\n\n"
        f"You will get another message once it is resolved.\n\n{_site_footer(language, site)}"
    )
    return Mail(subject=f"Rundruf incident: {title} {where}", body=body)


def incident_closed(
    language: Language, kind: IncidentKind, site: Site, opened_at: datetime, closed_at: datetime
) -> Mail:
    german = language is Language.DE
    title = (_WHAT_DE if german else _WHAT_EN)[kind][0]
    host, where = _host(language, site), _subject_site(language, site)
    if german:
        body = (
            f"Guten Tag,\n\ndie Störung „{title}“ auf {host} ist behoben. Sie "
            f"bestand seit {when(language, opened_at)} und wurde am "
            f"{when(language, closed_at)} als behoben erkannt.\n\n{_site_footer(language, site)}"
        )
        return Mail(subject=f"Rundruf: behoben: {title} {where}", body=body)
    body = (
        f'Hello,\n\nthe incident "{title}" on {host} is resolved. It began on '
        f"{when(language, opened_at)} and was seen resolved on "
        f"{when(language, closed_at)}.\n\n{_site_footer(language, site)}"
    )
    return Mail(subject=f"Rundruf: resolved: {title} {where}", body=body)


_MOOT_DE = {
    True: "Der Rundruf Manager Service ruft jetzt nur noch simuliert an (Simulator): Bei "
    "einem Alarm wird niemand wirklich angerufen. Soll er wieder über die Telefonanlage "
    "anrufen, muss der Dienst wieder mit SIP eingerichtet werden.",
    False: "Der Rundruf Manager Service meldet diesen Wert nicht mehr (ein älterer Dienst, "
    "oder der Rundruf-Jobdienst ist bei ihm nicht mehr eingerichtet).",
}
_MOOT_EN = {
    True: "The Rundruf Manager Service now only simulates its calls (simulator): in an "
    "alarm nobody is really called. To call through the phone system again, the service "
    "must be set up with SIP again.",
    False: "The Rundruf Manager Service no longer reports this value (an older service, or "
    "the Rundruf job service is no longer set up for it).",
}


def incident_moot(
    language: Language,
    kind: IncidentKind,
    site: Site,
    opened_at: datetime,
    closed_at: datetime,
    simulated_calls: bool,
) -> Mail:
    """An open incident that can no longer be judged: closed, and said so, never as
    resolved. `simulated_calls`: the reason is that the dialer now simulates."""
    german = language is Language.DE
    title = (_WHAT_DE if german else _WHAT_EN)[kind][0]
    host, where = _host(language, site), _subject_site(language, site)
    if german:
        body = (
            f"Guten Tag,\n\ndie Störung „{title}“ auf {host} (seit "
            f"{when(language, opened_at)}) wird seit {when(language, closed_at)} nicht mehr "
            f"überwacht; behoben ist sie damit nicht.\n\n{_MOOT_DE[simulated_calls]}\n\n"
            f"{_site_footer(language, site)}"
        )
        return Mail(subject=f"Rundruf: nicht mehr überwacht: {title} {where}", body=body)
    body = (
        f'Hello,\n\nthe incident "{title}" on {host} (since {when(language, opened_at)}) '
        f"is no longer watched since {when(language, closed_at)}; that does not mean it is "
        f"resolved.\n\n{_MOOT_EN[simulated_calls]}\n\n{_site_footer(language, site)}"
    )
    return Mail(subject=f"Rundruf: no longer watched: {title} {where}", body=body)


def license_notice(
    language: Language, tenant_name: str, key_prefix: str, valid_until: datetime, now: datetime
) -> Mail:
    """Says the real end and days left (a short trial may enter at the 30-day stage)."""
    end = when(language, valid_until)
    days = math.ceil((valid_until - now) / timedelta(days=1))
    german = language is Language.DE
    footer = _footer(language, tenant_name, "Lizenz" if german else "License", f"{key_prefix}…")
    if german:
        keeps = (
            "Eingerichtete Rundrufe laufen weiter; Änderungen an der Konfiguration sind "
            "ohne gültige Lizenz aber nicht möglich. Für eine Verlängerung wenden Sie "
            "sich bitte an Ihren Ansprechpartner."
        )
        if days <= 0:
            return Mail(
                subject=f"Rundruf: Ihre Lizenz ist abgelaufen ({tenant_name})",
                body=f"Guten Tag,\n\nIhre Rundruf-Lizenz ist am {end} abgelaufen. {keeps}"
                f"\n\n{footer}",
            )
        left = "einem Tag" if days == 1 else f"{days} Tagen"
        return Mail(
            subject=f"Rundruf: Ihre Lizenz läuft in {left} ab ({tenant_name})",
            body=f"Guten Tag,\n\nIhre Rundruf-Lizenz gilt bis {end}. {keeps}\n\n{footer}",
        )
    keeps = (
        "Configured broadcasts keep running, but the configuration cannot be changed "
        "without a valid license. Please contact your account manager to renew it."
    )
    if days <= 0:
        return Mail(
            subject=f"Rundruf: your license has expired ({tenant_name})",
            body=f"Hello,\n\nyour Rundruf license expired on {end}. {keeps}\n\n{footer}",
        )
    left = "1 day" if days == 1 else f"{days} days"
    return Mail(
        subject=f"Rundruf: your license expires in {left} ({tenant_name})",
        body=f"Hello,\n\nyour Rundruf license is valid until {end}. {keeps}\n\n{footer}",
    )
