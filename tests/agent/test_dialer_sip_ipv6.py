"""The SIP dialer over IPv6: a whole call on ::1 with SIPp as the member.

The outside review of issue 15 found the dialer could not work over IPv6 at all: its
Via read `SIP/2.0/UDP ::1:53241` and its Contact `<sip:Rundruf@::1:53241>`, which RFC
3261 25.1 and our own parser refuse (an IPv6 host is written in brackets). SIPp 3.6
takes `-i ::1` and writes `[::1]` itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Self

from edge_agent.dialer.port import CallOutcome
from edge_agent.dialer.sip import SipDialer
from edge_agent.sip.message import Request, parse
from edge_agent.sip.ua import Account
from tests.agent.dialer_contract import Recorder, assert_well_formed
from tests.agent.test_dialer_sip import call_request, tone_wav
from tests.processes import wait_until
from tests.sip.bed import SippUas, free_udp_port, need_sipp
from tests.sip.ipv6_loopback import LOOPBACK6, needs_ipv6

pytestmark = needs_ipv6


def _udp6_bound(port: int) -> bool:
    needle = f"{'0' * 24}01000000:{port:04X}"  # ::1 as /proc/net/udp6 writes it
    with open("/proc/net/udp6") as table:
        return any(line.split()[1] == needle for line in list(table)[1:])


class SippUas6(SippUas):
    """`SippUas` on ::1: its SIP and media addresses (-i, -mi) and its URI are IPv6; its
    remote-control socket (-ci) stays IPv4, which is all SIPp 3.6 can bind there."""

    def __init__(self, scenario: str, tmp_path: Path) -> None:
        super().__init__(
            scenario,
            tmp_path,
            port=free_udp_port(host=LOOPBACK6),
            media_port=free_udp_port(span=4, host=LOOPBACK6),
            timeout=30,
        )

    @property
    def uri(self) -> str:
        return f"sip:member@[{LOOPBACK6}]:{self.port}"

    def _args(self) -> list[str]:
        args = super()._args()
        for option in ("-i", "-mi"):
            args[args.index(option) + 1] = LOOPBACK6
        return args

    def _listening(self) -> bool:
        self._check_alive()
        return _udp6_bound(self.port)

    def start(self) -> Self:
        super(SippUas, self).start()
        wait_until(self._listening, 10, f"SIPp {self.scenario} on [::1]:{self.port}")
        return self


async def test_a_call_over_ipv6_is_answered_and_confirmed_by_sip_info(tmp_path: Path) -> None:
    need_sipp()
    announcement = tone_wav(tmp_path / "announcement.wav")
    account = Account("Rundruf", "secret", LOOPBACK6, (LOOPBACK6, 9), register=False)
    dialer = SipDialer(account, local=(LOOPBACK6, 0), proxy=False)
    try:
        with SippUas6("uas_dtmf_info.xml", tmp_path) as member:
            request = call_request(member.uri, announcement, ring_timeout_s=10.0)
            recorder = Recorder()
            outcome = await asyncio.wait_for(dialer.call(request, recorder), 30)
            assert member.wait(10) == 0, member.log()
    finally:
        await dialer.close()
    assert_well_formed(recorder.events, outcome, request)
    assert outcome is CallOutcome.CONFIRMED, recorder.events
    (invite,) = member.find("INVITE ")
    message = parse(invite.encode())  # our own INVITE parses (it did not)
    assert isinstance(message, Request)
    assert dialer.ua is not None
    port = dialer.ua.transport.local[1]
    assert (message.headers.get("Via") or "").startswith(f"SIP/2.0/UDP [::1]:{port};")
    assert message.headers.get("Contact") == f"<sip:Rundruf@[::1]:{port};transport=udp>"
    assert (message.headers.get("From") or "").startswith('"Rundruf" <sip:Rundruf@[::1]>;tag=')
    assert "c=IN IP6 ::1\r\n" in message.body.decode()  # SDP: no brackets (RFC 4566)
