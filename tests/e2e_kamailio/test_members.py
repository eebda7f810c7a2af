"""The members and the caller of the Kamailio tests, without the agent: a caller speaking
through Kamailio to a baresip member registered there, whose recording then correlates
with what was said (the measure mode 3's test uses, here with one G.711 hop); SIPp
members answering calls to several extensions. (That baresip's 1 confirms a call is
test_trigger_calls' mode 3: its baresip members end CONFIRMED.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_kamailio.correlate import best_correlation, samples, wav_samples
from tests.e2e_kamailio.members import BaresipMember, SippMembers
from tests.e2e_kamailio.site import users
from tests.e2e_kamailio.speech import message
from tests.sip.bed import need_pcap_play
from tests.sip.caller_rtp import Speak, Wait, spoken
from tests.sip.kamailio import Kamailio, need_kamailio
from tests.sip.trigger_caller import TriggerCaller

__all__ = ["message"]  # the session's spoken message (a fixture)


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[Kamailio]:
    need_kamailio()
    with Kamailio(tmp_path, users=users()) as kamailio:
        yield kamailio


def test_a_baresip_member_records_what_the_caller_says(
    pbx: Kamailio, tmp_path: Path, message: bytes
) -> None:
    need_pcap_play()
    caller = TriggerCaller([Wait(0.5), Speak(message), Wait(0.5)], caller="1000", hang_up=True)
    with BaresipMember(tmp_path, pbx, "2001", confirm_after=0.2) as member:
        auth = ("1000", pbx.password("1000"))
        with caller.dial(tmp_path, pbx.address, "2001", auth=auth) as sipp:
            assert sipp.wait(60) == 0, sipp.log() + pbx.log()
        member.wait_established()
        [recording] = member.recordings()
    score = best_correlation(samples(spoken(message)), wav_samples(recording))
    assert score > 0.99, score


def test_sipp_members_answer_each_extension_registered_for_them(
    pbx: Kamailio, tmp_path: Path
) -> None:
    need_pcap_play()
    with SippMembers(tmp_path, pbx, ["2001", "2002"], scenario="kam_uas_answer.xml") as members:
        for extension in ("2001", "2002"):
            assert pbx.bindings(extension) == [members.registered.contact(extension)]
        for extension in ("2001", "2002"):
            caller = TriggerCaller([Wait(0.2)], caller="1001", hang_up=True)
            auth = ("1001", pbx.password("1001"))
            with caller.dial(tmp_path / extension, pbx.address, extension, auth=auth) as sipp:
                assert sipp.wait(30) == 0, sipp.log()
        assert members.sipp.wait(10) == 0, members.sipp.log()
    invites = members.sipp.find("INVITE ")
    assert [i.split()[1].split("@")[0] for i in invites] == ["sip:2001", "sip:2002"]
    assert not pbx.bindings("2001"), "de-registered when the members went"
