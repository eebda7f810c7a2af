"""Our SIP messages over IPv6: every host:port we write names an IPv6 host in brackets
(RFC 3261 25.1), the SDP's c= line without (RFC 4566). The outside review of issue 15
found `Via: SIP/2.0/UDP ::1:53241` and `Contact: <sip:Rundruf@::1:53241>`, which our own
parser refuses; the whole call over ::1 is tests/agent/test_dialer_sip_ipv6.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from edge_agent.sip import nat
from edge_agent.sip.addresses import hostport, parse_name_addr, parse_via
from edge_agent.sip.message import Headers, Request, Response, parse
from edge_agent.sip.transport import UdpTransport
from edge_agent.sip.ua import Account, UserAgent
from tests.sip.ipv6_loopback import LOOPBACK6, needs_ipv6


@pytest.fixture
async def ua() -> AsyncIterator[UserAgent]:
    transport = await UdpTransport.listen(LOOPBACK6, 0, lambda *_: None)
    account = Account("Rundruf", "pw", LOOPBACK6, (LOOPBACK6, 5060), register=False)
    yield UserAgent(account, transport)
    transport.close()


def test_host_and_port_are_written_with_brackets_for_ipv6() -> None:
    assert hostport("::1", 5060) == "[::1]:5060"
    assert hostport("[2001:db8::1]", 5061) == "[2001:db8::1]:5061"  # not twice
    assert hostport("192.0.2.1", 5060) == "192.0.2.1:5060"
    assert hostport("pbx.example", None) == "pbx.example"


@needs_ipv6
async def test_our_requests_over_ipv6_parse_with_our_own_parser(ua: UserAgent) -> None:
    request = ua.new_request("INVITE", "sip:member@[::1]:5070", "<sip:member@[::1]:5070>")
    message = parse(bytes(request))
    assert isinstance(message, Request)
    port = ua.transport.local[1]
    via = parse_via(message.headers.get("Via") or "")
    assert (via.host, via.port, "rport" in via.params) == (LOOPBACK6, port, True)
    contact = parse_name_addr(message.headers.get("Contact") or "").uri
    assert (contact.host, contact.port) == (LOOPBACK6, port)
    sender = parse_name_addr(message.headers.get("From") or "").uri
    assert sender.host == LOOPBACK6


@needs_ipv6
async def test_a_public_ipv6_address_learned_behind_nat_is_our_contact(ua: UserAgent) -> None:
    via = f"SIP/2.0/UDP [::1]:{ua.transport.local[1]};branch=z9hG4bKr;rport=6000"
    answer = Response(
        200,
        "OK",
        Headers(
            [
                ("Via", f"{via};received=2001:db8::5"),
                ("From", "<sip:Rundruf@[::1]>;tag=1"),
                ("To", "<sip:Rundruf@[::1]>;tag=2"),
                ("Call-ID", "r@::1"),
                ("CSeq", "1 REGISTER"),
            ]
        ),
    )
    parsed = parse(bytes(answer))
    assert isinstance(parsed, Response)
    ua.public = nat.learned(parsed, ua.transport.local, None)
    assert ua.public == ("2001:db8::5", 6000)
    assert ua.contact == "<sip:Rundruf@[2001:db8::5]:6000;transport=udp>"
    assert parse_name_addr(ua.contact).uri.host == "2001:db8::5"
