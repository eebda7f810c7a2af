"""The watchdog's judgements and mail texts, without a database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from api.domain import watchdog as rules
from api.models import IncidentKind, Language, SipRegistrationState

NOW = datetime(2027, 1, 15, 13, 0, tzinfo=UTC)
HEALTHY = rules.Reported(
    last_heartbeat_at=NOW,
    enrolled_at=NOW - timedelta(days=10),
    pbx_reachable=True,
    jobservice_reachable=None,
    alarm_service_ok=True,
)


def _judge(reported: rules.Reported, seconds_later: float) -> rules.Verdict:
    return rules.judge(reported, NOW + timedelta(seconds=seconds_later), 60, 3)


def test_a_heartbeat_is_overdue_after_k_poll_intervals():
    assert _judge(HEALTHY, 180).failing == frozenset()
    assert _judge(HEALTHY, 181).failing == {IncidentKind.HEARTBEAT_MISSED}


def test_an_installation_that_never_reported_counts_from_its_enrolment():
    never = rules.Reported(None, NOW, None, None, None)
    assert _judge(never, 100).failing == frozenset()
    assert _judge(never, 181).failing == {IncidentKind.HEARTBEAT_MISSED}


def test_while_overdue_only_the_heartbeat_is_judged():
    down = rules.Reported(
        NOW, NOW, False, False, False, SipRegistrationState.FAILED, journal_writable=False
    )
    assert _judge(down, 10).failing == set(rules.FLAG_KINDS)
    assert _judge(down, 10).judged == set(rules.INSTALLATION_KINDS)
    assert _judge(down, 500).judged == {IncidentKind.HEARTBEAT_MISSED}


def test_only_a_failed_sip_registration_is_a_failure():
    sip = IncidentKind.SIP_REGISTRATION_FAILED
    for state, failing in [
        (SipRegistrationState.FAILED, True),
        (SipRegistrationState.REGISTERING, False),
        (SipRegistrationState.REGISTERED, False),
        (SipRegistrationState.DISABLED, False),
    ]:
        verdict = _judge(dataclasses.replace(HEALTHY, sip_registration=state), 10)
        assert (sip in verdict.failing) is failing, state
        assert sip in verdict.judged and sip not in verdict.moot


def test_an_unknown_flag_is_neither_failure_nor_recovery():
    # A simulated dialer or an agent that does not say: nothing to judge, so an open
    # incident is moot (closed as no longer watched), never "resolved".
    verdict = _judge(dataclasses.replace(HEALTHY, sip_registration=None), 10)
    for kind in (IncidentKind.SIP_REGISTRATION_FAILED, IncidentKind.JOBSERVICE_UNREACHABLE):
        assert kind not in verdict.failing and kind not in verdict.judged
        assert kind in verdict.moot


def test_a_failed_registration_is_told_only_after_its_grace():
    sip = IncidentKind.SIP_REGISTRATION_FAILED
    assert rules.NOTICE_GRACE[sip] == timedelta(minutes=2)
    assert not rules.notice_due(sip, NOW, NOW + timedelta(seconds=119))
    assert rules.notice_due(sip, NOW, NOW + timedelta(seconds=120))
    assert rules.notice_due(IncidentKind.PBX_UNREACHABLE, NOW, NOW)  # the others at once


def test_mails_of_a_simulated_installation_say_simulator():
    site = rules.Site("Owner AG", "swyx.owner.example", simulated=True)
    de = rules.incident_opened(Language.DE, IncidentKind.PBX_UNREACHABLE, site, NOW)
    assert de.subject == "Rundruf-Störung: Telefonanlage nicht erreichbar (Owner AG, Simulator)"
    assert "Installation: swyx.owner.example (Simulator)" in de.body
    en = rules.incident_closed(Language.EN, IncidentKind.PBX_UNREACHABLE, site, NOW, NOW)
    assert en.subject == "Rundruf: resolved: phone system unreachable (Owner AG, simulator)"


def test_the_license_stage_is_the_nearest_warning_reached():
    days = [30, 7, 1]
    assert rules.license_stage(NOW + timedelta(days=31), NOW, days) is None
    assert rules.license_stage(NOW + timedelta(days=30), NOW, days) == 30
    assert rules.license_stage(NOW + timedelta(days=7, seconds=1), NOW, days) == 30
    assert rules.license_stage(NOW + timedelta(days=7), NOW, days) == 7
    assert rules.license_stage(NOW + timedelta(hours=3), NOW, days) == 1
    assert rules.license_stage(NOW, NOW, days) == 0
    assert rules.license_stage(NOW - timedelta(days=400), NOW, days) == 0


def test_mails_name_the_time_in_berlin_in_each_language():
    site = rules.Site(tenant_name="Owner AG", hostname="swyx.owner.example")
    de = rules.incident_opened(Language.DE, IncidentKind.HEARTBEAT_MISSED, site, NOW)
    assert "15.01.2027 um 14:00 Uhr (MEZ)" in de.body
    en = rules.incident_closed(
        Language.EN, IncidentKind.PBX_UNREACHABLE, site, NOW, NOW + timedelta(hours=1)
    )
    assert en.subject == "Rundruf: resolved: phone system unreachable (Owner AG)"
    assert "2027-01-15 at 14:00 (CET)" in en.body and "2027-01-15 at 15:00 (CET)" in en.body
    expired = rules.license_notice(Language.EN, "Owner AG", "rdl_abc", NOW, NOW)
    assert expired.subject == "Rundruf: your license has expired (Owner AG)"
    assert "License: rdl_abc…" in expired.body
