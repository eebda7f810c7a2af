"""Alarms triggered by a phone call through a real SIP server (issue 16 point 5).

Kamailio is the PBX (tests/sip/kamailio.py): registrar with digest auth, extensions to
registered contacts, the agent numbers 7000-7019 to the "Rundruf" registration with
`Diversion`, dialog state (RFC 4235). The real `rundruf agent run` registers there as
"Rundruf" with the SIP dialer and answers the trigger call itself; the real central
service (PostgreSQL) keeps the history. The caller is SIPp (tests/sip/trigger_caller.py)
dialling the agent number from extension 1000 and up, authenticated at Kamailio,
pressing its keys as RFC 4733 events or SIP INFO; the members are SIPp (answer, 1 as
INFO) and baresip (records, 1 as RFC 4733) at extensions 2001-2020.

One Kamailio and one customer (agent, group of 20) serve the whole module; each test
brings its own members and de-registers them after.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import test_agent_e2e as channel_e2e
from tests.e2e_kamailio.correlate import best_correlation, samples, wav_samples
from tests.e2e_kamailio.mail import mailer
from tests.e2e_kamailio.members import BaresipMember, SippMembers
from tests.e2e_kamailio.site import KamailioSite, kamailio, kamailio_site
from tests.e2e_kamailio.speech import message
from tests.e2e_kamailio.timelines import alarm, recorded_alarm, wrong_pins
from tests.processes import wait_until
from tests.sip.bed import SippUac, need_pcap_play
from tests.sip.caller_rtp import Step, Wait, spoken
from tests.sip.kamailio import MEMBERS, Kamailio, need_kamailio
from tests.sip.trigger_caller import Dtmf, TriggerCaller
from tests.test_agent_e2e import Stack

stack = channel_e2e.stack  # this module's server, database and platform admin
__all__ = ["message", "stack"]

DTMF: list[Dtmf] = ["rfc4733", "info"]


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    need_kamailio()
    need_pcap_play()
    with kamailio(tmp_path_factory.mktemp("kamailio")) as pbx:
        yield pbx


@pytest.fixture(scope="module")
def customer(
    stack: Stack, pbx: Kamailio, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KamailioSite]:
    site = kamailio_site(stack, tmp_path_factory.mktemp("customer"), pbx)
    try:
        yield site
    finally:
        site.stop()


def dial(
    customer: KamailioSite, tmp_path: Path, steps: list[Step], dtmf: Dtmf, caller: str = "1000"
) -> SippUac:
    """SIPp calling the group's agent number from `caller` through Kamailio."""
    call = TriggerCaller(steps, dtmf, caller=caller)
    auth = (caller, customer.pbx.password(caller))
    return call.dial(tmp_path, customer.pbx.address, customer.agent_number, auth=auth)


def outcomes(broadcast: dict[str, Any]) -> dict[str, list[str]]:
    """Member extension -> the outcomes of its attempts, in order."""
    found: dict[str, list[str]] = {}
    for a in sorted(broadcast["attempts"], key=lambda a: (a["memberExtension"], a["attemptNo"])):
        found.setdefault(a["memberExtension"], []).append(a["outcome"])
    return found


def ended_by_the_agent(caller: SippUac) -> bool:
    return caller.flow()[-2:] == ["< BYE", "> 200"]


@pytest.mark.parametrize("dtmf", DTMF)
def test_mode_2_calls_all_20_members_and_the_history_names_the_sip_caller(
    customer: KamailioSite, tmp_path: Path, dtmf: Dtmf
) -> None:
    before = customer.broadcast_ids()
    with SippMembers(tmp_path, customer.pbx, MEMBERS) as members:
        with dial(customer, tmp_path, alarm(customer.pin, "2"), dtmf) as caller:
            assert caller.wait(60) == 0, caller.log()
        broadcast = customer.finished_after(before)
        assert members.sipp.wait(30) == 0, members.sipp.log()
    assert ended_by_the_agent(caller), caller.flow()  # after "Rundruf wird ausgelöst"
    assert (broadcast["mode"], broadcast["status"]) == ("ALARM", "COMPLETED")
    assert broadcast["triggerSource"] == "SIP"
    assert broadcast["triggerCallerNumber"] == "1000"
    assert broadcast["memberCount"] == 20
    assert outcomes(broadcast) == {ext: ["CONFIRMED"] for ext in MEMBERS}
    for attempt in broadcast["attempts"]:
        assert attempt["memberName"] == customer.members[attempt["memberExtension"]]
        steps = [attempt[k] for k in ("startedAt", "ringingAt", "answeredAt", "confirmedAt")]
        assert all(steps) and steps == sorted(steps), attempt
        assert attempt["endedAt"] >= attempt["confirmedAt"]
    # Each member's call came through Kamailio, which stayed in the dialog.
    invites = members.sipp.find("INVITE ")
    assert sorted(i.split("@")[0].removeprefix("INVITE sip:") for i in invites) == list(MEMBERS)
    assert all(f"Record-Route: <sip:127.0.0.1:{customer.pbx.port};lr" in i for i in invites)


@pytest.mark.parametrize("dtmf", DTMF)
def test_mode_3_plays_the_callers_message_to_the_members_as_it_was_spoken(
    customer: KamailioSite, tmp_path: Path, message: bytes, dtmf: Dtmf
) -> None:
    """What a baresip member records correlates above 0.99 with what the caller said,
    after G.711 from the caller to the agent and again from the agent to the member."""
    before = customer.broadcast_ids()
    listen = len(message) / 16000 + 2.0  # the whole message, then 1
    phones = MEMBERS[-2:]
    with (
        SippMembers(tmp_path, customer.pbx, MEMBERS[:-2]) as members,
        BaresipMember(tmp_path, customer.pbx, phones[0], confirm_after=listen) as first,
        BaresipMember(tmp_path, customer.pbx, phones[1], confirm_after=listen) as second,
    ):
        with dial(customer, tmp_path, recorded_alarm(customer.pin, message), dtmf) as caller:
            assert caller.wait(90) == 0, caller.log()
        broadcast = customer.finished_after(before, timeout=90)
        assert members.sipp.wait(30) == 0, members.sipp.log()
        recordings = [first.recordings(), second.recordings()]
    assert ended_by_the_agent(caller), caller.flow()
    assert (broadcast["mode"], broadcast["status"]) == ("ALARM_RECORDED", "COMPLETED")
    assert broadcast["triggerSource"] == "SIP"
    assert Counter(o for found in outcomes(broadcast).values() for o in found) == {"CONFIRMED": 20}
    said = samples(spoken(message))
    for recorded in recordings:
        assert len(recorded) == 1, recorded
        score = best_correlation(said, wav_samples(recorded[0]))
        assert score > 0.99, score


def test_three_wrong_pins_end_the_call_ten_mail_the_tenant_and_the_next_caller_is_not_delayed(
    customer: KamailioSite, stack: Stack, tmp_path: Path
) -> None:
    """The notice needs 10 wrong PINs within 10 minutes (definition.py, no lower threshold
    configured): four callers (1001-1004, two with RFC 4733, two with INFO) enter three
    wrong PINs each, at once. Then 1005 triggers with its PIN pressed one second after the
    answer: a caller the agent made wait would have had that PIN forgotten. The mail is
    delivered by the real `rundruf worker` to aiosmtpd."""
    before = customer.broadcast_ids()
    wrong = "0000" if customer.pin != "0000" else "1111"
    ways: list[tuple[str, Dtmf]] = [
        ("1001", "rfc4733"),
        ("1002", "info"),
        ("1003", "rfc4733"),
        ("1004", "info"),
    ]
    callers = [dial(customer, tmp_path / n, wrong_pins(wrong), dtmf, n) for n, dtmf in ways]
    secret = stack.env["RUNDRUF_SECRET_KEY"]
    with mailer(customer.database_url, secret, tmp_path) as mail:
        for caller in callers:
            caller.start()
        try:
            for caller in callers:
                assert caller.wait(90) == 0, caller.log()
        finally:
            for caller in callers:
                caller.stop()
        subject = f"falsche PINs für die Rundrufnummer {customer.agent_number}"
        queued = wait_until(lambda: customer.mails(f"%{subject}%"), 40, "the mail in the outbox")
        sent = wait_until(lambda: mail.received(subject, len(queued)), 40, "the SMTP delivery")
    for caller in callers:
        assert ended_by_the_agent(caller), caller.flow()  # the agent hung up after 3 tries
    assert customer.broadcast_ids() == before, "a wrong PIN triggers nothing"
    assert len({to for to, _ in queued}) == len(queued), "one mail per address"
    assert sorted(to for m in sent for to in m.to) == sorted(to for to, _ in queued)
    with SippMembers(tmp_path, customer.pbx, MEMBERS) as members:
        with dial(customer, tmp_path / "1005", alarm(customer.pin, "2"), "rfc4733", "1005") as c:
            assert c.wait(60) == 0, c.log()
        broadcast = customer.finished_after(before)
        assert members.sipp.wait(30) == 0, members.sipp.log()
    assert broadcast["triggerCallerNumber"] == "1005" and broadcast["status"] == "COMPLETED"


@pytest.mark.parametrize("dtmf", DTMF)
def test_a_test_call_skips_two_members_busy_in_a_call_through_kamailio(
    customer: KamailioSite, tmp_path: Path, dtmf: Dtmf
) -> None:
    """2019 calls 2020 through Kamailio and they stay in that call; Kamailio's dialog
    state (RFC 4235) is what the agent asks in test mode (the simulator knows no states)."""
    before = customer.broadcast_ids()
    busy = MEMBERS[-2:]
    talk = TriggerCaller([Wait(60)], caller=busy[0], hang_up=True)
    auth = (busy[0], customer.pbx.password(busy[0]))
    with (
        SippMembers(tmp_path, customer.pbx, MEMBERS[:-2]) as members,
        SippMembers(tmp_path, customer.pbx, busy[1:], scenario="kam_uas_answer.xml") as callee,
        talk.dial(tmp_path, customer.pbx.address, busy[1], auth=auth) as call,
    ):
        # The trace as it is written (flow() would parse a half-written entry).
        up = re.compile(r"^ACK sip:", re.MULTILINE)
        wait_until(lambda: up.search(callee.sipp.messages()), 20, "the members' call to be up")
        with dial(customer, tmp_path, alarm(customer.pin, "1"), dtmf) as caller:
            assert caller.wait(60) == 0, caller.log()
        broadcast = customer.finished_after(before)
        assert members.sipp.wait(30) == 0, members.sipp.log()
        assert call.process is not None and call.process.poll() is None, "still talking"
    assert (broadcast["mode"], broadcast["status"]) == ("TEST", "COMPLETED")
    expected = {ext: ["SKIPPED_BUSY" if ext in busy else "CONFIRMED"] for ext in MEMBERS}
    assert outcomes(broadcast) == expected
    skipped = [a for a in broadcast["attempts"] if a["outcome"] == "SKIPPED_BUSY"]
    assert all(a["startedAt"] is None for a in skipped), "a busy member is never dialled"
    assert len(callee.sipp.find("INVITE ")) == 1, "the agent never rang the busy callee"
