"""Only an address a NAT could have given us becomes our Contact (issue 15, review 7
point 8; docs/decisions/sip-nat.md, "Plausible").

Before, anything but 0.0.0.0 and multicast was taken from the registrar's Via: a
garbage `received=255.255.255.255` became our Contact, and an SBC on our own host
that wrote its own address (`received=127.0.0.1` while we are bound to 127.0.0.2)
moved our Contact where nothing listens, so the member's INFO digit was lost.
"""

from __future__ import annotations

import pytest

from edge_agent.sip import nat
from edge_agent.sip.transport import UdpTransport
from edge_agent.sip.ua import Account, UserAgent
from tests.sip_unit.test_nat import OURS, Peer, answer_with, peers, registrar

__all__ = ["peers"]  # the fixture

LAN = "192.168.1.20"
CLOUD = "81.2.69.200"  # the registrar in the cloud (a global address)


@pytest.mark.parametrize(
    ("seen", "local", "registrar_ip", "taken"),
    [
        # Behind a home or office NAT, a cloud registrar: the classic case.
        ("81.2.69.160", LAN, CLOUD, True),
        ("81.2.69.160", "85.10.1.20", CLOUD, True),  # a 1:1 NAT between global addresses
        ("10.20.0.5", LAN, "10.20.9.9", True),  # a NAT between two private networks
        ("100.64.0.7", LAN, "100.64.9.9", True),  # carrier-grade NAT (shared space)
        ("2a00:1450:4001::5", "fd00:1::20", "2a00:1450:4001::1", True),
        ("127.0.0.3", "127.0.0.2", "127.0.0.4", True),  # tests/sip/nat_relay.py on one host
        ("10.1.1.1", "127.0.0.1", "127.0.0.1", True),  # bound to loopback: a test bed
        (LAN, LAN, CLOUD, True),  # only the port changed (or nothing at all)
        # No address of one host.
        ("255.255.255.255", LAN, CLOUD, False),
        ("255.255.255.255", "127.0.0.1", "127.0.0.1", False),  # review 7: n1 garbage
        ("240.0.0.1", LAN, CLOUD, False),
        ("224.0.0.1", LAN, CLOUD, False),
        ("169.254.3.3", LAN, CLOUD, False),
        ("0.1.2.3", LAN, CLOUD, False),
        ("fe80::1", "fd00:1::20", "2a00:1450:4001::1", False),
        ("::ffff:81.2.69.160", "fd00:1::20", "2a00:1450:4001::1", False),
        # Loopback from off this host, or the registrar naming its own address.
        ("127.0.0.1", LAN, CLOUD, False),
        ("::1", "fd00:1::20", "2a00:1450:4001::1", False),
        ("127.0.0.1", "127.0.0.2", "127.0.0.1", False),  # review 7: n5, an SBC's own socket
        (CLOUD, LAN, CLOUD, False),
        # Private where no NAT can be: a neighbour's address, or a registrar next door.
        ("192.168.1.1", LAN, CLOUD, False),
        ("fd00:1::99", "fd00:1::20", "2a00:1450:4001::1", False),
        ("81.2.69.160", LAN, "192.168.1.5", False),  # the PBX in our LAN
        ("10.0.0.5", "85.10.1.20", CLOUD, False),  # private while ours is global
    ],
)
def test_only_an_address_a_nat_could_have_given_us_is_taken(
    seen: str, local: str, registrar_ip: str, taken: bool
) -> None:
    assert (nat.implausible(seen, local, registrar_ip) is None) is taken


def test_an_implausible_view_keeps_what_was_learned_before() -> None:
    local = (LAN, 5060)
    public = ("81.2.69.160", 61000)
    garbage = answer_with(OURS + ";received=255.255.255.255;rport=5000")
    assert nat.learned(garbage, local, public, (CLOUD, 5060)) == public
    assert nat.learned(garbage, local, None, (CLOUD, 5060)) is None
    real = answer_with(OURS + ";received=81.2.69.161;rport=5000")
    assert nat.learned(real, local, public, (CLOUD, 5060)) == ("81.2.69.161", 5000)


@pytest.mark.parametrize(
    ("bound", "received"),
    [
        ("127.0.0.2", "127.0.0.1"),  # n5_sbc_contact.py: an SBC's own socket
        ("127.0.0.1", "255.255.255.255"),  # n1_registrar.py garbage
    ],
    ids=["sbc-own-address", "broadcast"],
)
async def test_a_registrar_view_no_nat_could_give_does_not_move_our_contact(
    peers: list[Peer], bound: str, received: str
) -> None:
    """Review 7: before, the Contact moved there and a second REGISTER said so."""
    pbx = Peer(registrar(lambda source: f";received={received};rport={source[1]}"))
    peers.append(pbx)
    holder: list[UserAgent] = []
    transport = await UdpTransport.listen(bound, 0, lambda m, s, t: holder[0].receive(m, s, t))
    ua = UserAgent(Account("Rundruf", "pw", "example.net", pbx.address), transport)
    holder.append(ua)
    try:
        await ua.register_once()
        await ua.register_once()
    finally:
        await ua.close()
    assert ua.public is None
    local = "{}:{}".format(*transport.local)
    assert ua.contact == f"<sip:Rundruf@{local};transport=udp>"
    contacts = [r.headers.get("Contact") for r in pbx.requests]
    assert contacts == [ua.contact, ua.contact]  # no REGISTER to move it
