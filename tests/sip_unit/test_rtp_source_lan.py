"""Whose RTP a call hears on a LAN and behind NAT, with real addresses (review of issue
15, point 1): on a private network where the phone's SDP names its own address, a
forged "1" from another host or another port of the phone never confirms, also after
a re-INVITE moves the phone's RTP; behind NAT only the PBX's IP latches. The scenario
(tests/sip_unit/rtp_source_lan.py) runs in a network namespace of its own (``unshare
-rn``) whose loopback carries 192.168.1.x and 93.184.216.34. Linux only."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.sip_unit.namespaces import needs_namespaces, scenario_result

SCENARIO = Path(__file__).with_name("rtp_source_lan.py")

pytestmark = needs_namespaces


def test_a_forged_one_on_a_lan_or_behind_nat_never_confirms_and_the_peer_is_heard() -> None:
    result = scenario_result(["unshare", "-rn", sys.executable, str(SCENARIO)], timeout_s=60)
    lan, nat = result["lan"], result["nat"]
    # The phone at 192.168.1.20 never pressed a key: no forged "1" got through.
    assert lan["digits"] == [], result
    assert lan["latched"][0] == "192.168.1.20" and lan["reached"], result
    # Two before the phone's first packet, one after, two after the move.
    assert lan["dropped"] == 5, result
    assert nat["digits"] == [], result
    assert nat["latched"][0] == "93.184.216.34" and nat["reached"], result
    assert nat["dropped"] == 2, result
