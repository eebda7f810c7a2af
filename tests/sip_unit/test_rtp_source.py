"""Whose RTP a call hears (issue 15, points 1 and 10): a forged telephone-event "1" from
another address or port never confirms. Only where the SDP names a private address
while our SIP goes to a global or loopback one (a NAT between) may a packet from
elsewhere latch, and then only one from the IP our SIP goes to; our RTP goes back
there (symmetric RTP, RFC 4961)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from edge_agent.sip import sdp
from edge_agent.sip.call import Call
from edge_agent.sip.media_source import RtpSource, learnable_from, scope
from edge_agent.sip.message import Request, parse
from edge_agent.sip.rtp import RtpPacket, TelephoneEvent
from edge_agent.sip.transport import UdpTransport
from edge_agent.sip.ua import Account, UserAgent

HOST = "127.0.0.1"
STRANGER = "127.0.0.2"  # another IP than the one our SIP goes to
EVENT_PT = 101


def press(digit: int, timestamp: int, ssrc: int = 0x5EED) -> bytes:
    """The end packet of an RFC 4733 key press (what a phone sends three times)."""
    event = TelephoneEvent(digit, end=True, volume=10, duration=800)
    return bytes(RtpPacket(EVENT_PT, 7, timestamp, ssrc, bytes(event), marker=True))


def voice(ssrc: int = 0x5EED) -> bytes:
    return bytes(RtpPacket(0, 1, 160, ssrc, b"\xff" * 160))


class Peer:
    """A UDP socket on loopback that sends to the call's RTP port and collects what comes."""

    def __init__(self, host: str = HOST) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(2)
        self.address: tuple[str, int] = self.sock.getsockname()

    def send(self, call: Call, data: bytes) -> None:
        assert call.media is not None
        self.sock.sendto(data, (HOST, call.media.port))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peers() -> Iterator[tuple[Peer, Peer]]:
    phone, forger = Peer(), Peer()
    yield phone, forger
    phone.close()
    forger.close()


@pytest.fixture
def stranger() -> Iterator[Peer]:
    forger = Peer(STRANGER)
    yield forger
    forger.close()


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the PBX: takes the INVITE
    sink.bind((HOST, 0))
    transport = await UdpTransport.listen(HOST, 0, lambda *_: None)
    ua = UserAgent(Account("Rundruf", "pw", HOST, sink.getsockname(), register=False), transport)
    call = Call(ua, f"sip:member@{HOST}:{sink.getsockname()[1]}", {})
    call.begin()
    try:
        yield call
    finally:
        assert call._transaction is not None
        call._transaction.final.cancel()
        call.close()
        transport.close()
        sink.close()


def answered(call: Call, address: str, port: int) -> None:
    """The phone's answer named `address`:`port` for PCMU and telephone-events."""
    call.negotiated = sdp.negotiate(sdp.parse(sdp.offer(address, port, 7, payloads=(0, 101))))


async def settle() -> None:
    """Lets the loop read what was sent to the call's socket."""
    for _ in range(5):
        await asyncio.sleep(0.02)


async def test_a_forged_one_from_another_port_does_not_confirm_and_the_real_one_does(
    call: Call, peers: tuple[Peer, Peer]
):
    phone, forger = peers
    answered(call, *phone.address)
    forger.send(call, press(1, 1000))  # first, before the phone sent anything
    await settle()
    assert call.digits.empty()
    assert call.rtp_dropped == 1
    phone.send(call, press(1, 2000))
    await settle()
    assert call.digits.get_nowait() == "1"
    forger.send(call, press(1, 3000))
    await settle()
    assert call.digits.empty()
    assert call.rtp_dropped == 2


async def test_behind_nat_only_the_ip_our_sip_goes_to_latches_and_our_rtp_goes_there(
    call: Call, peers: tuple[Peer, Peer], stranger: Peer
):
    phone, _ = peers
    assert call.rtp_source.peer == HOST  # where the INVITE went
    answered(call, "10.99.0.7", 40000)  # a private address our SIP's peer is not in: NAT
    stranger.send(call, press(1, 500))  # first, and fitting: but from a stranger's IP
    await settle()
    assert call.digits.empty()
    assert call.rtp_source.latched is None
    phone.send(call, voice())  # from the IP our SIP goes to (the PBX's, the NAT's)
    await settle()
    call.send_rtp(voice(0x1))
    data, _ = phone.sock.recvfrom(2048)  # symmetric RTP: to where the phone's came from
    assert RtpPacket.parse(data).ssrc == 0x1
    stranger.send(call, press(1, 1000))
    await settle()
    assert call.digits.empty()
    phone.send(call, press(1, 2000))
    await settle()
    assert call.digits.get_nowait() == "1"
    assert call.rtp_dropped == 2


async def test_behind_nat_only_rtp_of_the_offered_payload_types_latches(
    call: Call, peers: tuple[Peer, Peer]
):
    phone, forger = peers  # both on the IP our SIP goes to, other ports
    answered(call, "192.168.7.7", 40000)
    forger.send(call, b"\x00\x01" + b"\x00" * 18)  # STUN-like, not RTP
    forger.send(call, bytes(RtpPacket(9, 1, 160, 1, b"\x00" * 160)))  # G.722: not offered
    await settle()
    phone.send(call, press(1, 1000))  # not dropped: nothing was latched
    await settle()
    assert call.digits.get_nowait() == "1"
    forger.send(call, press(1, 2000))
    await settle()
    assert call.digits.empty()
    assert call.rtp_dropped == 3


def reinvite(address: str, port: int, branch: str) -> bytes:
    body = sdp.offer(address, port, 99, payloads=(0, 101))
    head = (
        f"INVITE sip:Rundruf@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:5090;branch={branch}\r\n"
        "From: <sip:member@pbx>;tag=them\r\nTo: <sip:Rundruf@pbx>;tag=us\r\n"
        "Call-ID: re-1\r\nCSeq: 2 INVITE\r\nContact: <sip:member@127.0.0.1:5090>\r\n"
        "Content-Type: application/sdp\r\n"
    )
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


async def test_a_reinvite_to_another_address_starts_over_and_a_refresh_keeps_the_latch(
    call: Call, peers: tuple[Peer, Peer]
):
    phone, moved = peers
    answered(call, "10.99.0.7", 40000)
    phone.send(call, voice())
    await settle()
    refresh = call.handle(parse(reinvite("10.99.0.7", 40000, "z9hG4bK-r1")), (HOST, 5090))
    assert refresh is not None and refresh.status == 200
    call.send_rtp(voice(0x2))  # still to the latched source, not to 10.99.0.7
    data, _ = phone.sock.recvfrom(2048)
    assert RtpPacket.parse(data).ssrc == 0x2
    moved_to = call.handle(parse(reinvite(*moved.address, "z9hG4bK-r2")), (HOST, 5090))
    assert moved_to is not None and moved_to.status == 200
    phone.send(call, press(1, 1000))  # the old source is no longer the phone
    await settle()
    assert call.digits.empty()
    moved.send(call, press(1, 2000))
    await settle()
    assert call.digits.get_nowait() == "1"


def test_the_scope_of_an_address_private_is_only_what_a_nat_hides():
    private = ["10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.1.1"]
    assert {scope(a) for a in [*private, "fd00::1", "fe80::1", "::ffff:10.0.0.1"]} == {"private"}
    assert {scope(a) for a in ["127.0.0.1", "::1", "::ffff:127.0.0.1"]} == {"loopback"}
    assert {scope(a) for a in ["8.8.8.8", "2001:4860::1", "93.184.216.34"]} == {"global"}
    # Documentation, broadcast, multicast: nobody's LAN (Python's is_private has them).
    odd = ["192.0.2.7", "255.255.255.255", "224.0.0.1", "198.18.0.1", "ff02::1", "2001:db8::1"]
    assert {scope(a) for a in odd} == {"other"}
    assert scope("0.0.0.0") == scope("::") == "unspecified"


def test_only_a_private_sdp_address_behind_a_global_or_loopback_peer_may_be_learned():
    assert learnable_from("10.0.0.5", "93.184.216.34") == "93.184.216.34"  # NAT to the cloud
    assert learnable_from("fd00::5", "2001:4860::1") == "2001:4860::1"
    assert learnable_from("10.0.0.5", "127.0.0.1") == "127.0.0.1"  # a PBX on this host
    assert learnable_from("::ffff:10.0.0.5", "::ffff:8.8.8.8") == "8.8.8.8"
    # The SDP's address can be where the packets come from: taken at its word.
    assert learnable_from("192.168.1.20", "192.168.1.20") is None  # a LAN, the phone itself
    assert learnable_from("192.168.1.20", "192.168.1.5") is None  # a LAN, a PBX on it
    assert learnable_from("93.184.216.34", "192.168.1.5") is None
    assert learnable_from("93.184.216.34", "93.184.216.35") is None
    assert learnable_from("127.0.0.1", "127.0.0.1") is None
    for odd in ("255.255.255.255", "192.0.2.7", "0.0.0.0"):
        assert learnable_from(odd, "127.0.0.1") is None
    assert learnable_from("10.0.0.5", "192.0.2.1") is None  # nobody's address
    assert learnable_from("10.0.0.5", "pbx.example") is None
    assert learnable_from("10.0.0.5", None) is None


def test_on_a_lan_a_forged_one_never_latches_where_the_sdp_names_the_phone():
    # a1_latch_race.py lan / lan-port: agent, phone and forger on one private network.
    source = RtpSource(peer="192.168.1.20")
    source.expect(("192.168.1.20", 4000), [0, 101])
    assert not source.admit(("192.168.1.66", 4000), press(1, 1000))  # another host
    assert not source.admit(("192.168.1.20", 4001), press(1, 1000))  # the phone's IP
    assert source.latched is None
    assert source.destination == ("192.168.1.20", 4000)
    assert source.admit(("192.168.1.20", 4000), voice())
    assert (source.latched, source.dropped) == (("192.168.1.20", 4000), 2)


def test_a_reinvite_to_a_new_port_opens_no_window_for_a_stranger():
    # a3_reinvite_reopens.py lan: the phone moves its RTP; the forger keeps sending.
    source = RtpSource(peer="192.168.1.20")
    source.expect(("192.168.1.20", 4000), [0, 101])
    assert source.admit(("192.168.1.20", 4000), voice())
    source.expect(("192.168.1.20", 4002), [0, 101])
    assert not source.admit(("192.168.1.66", 5000), press(1, 1000))
    assert not source.admit(("192.168.1.20", 4000), press(1, 1000))  # the old port: gone
    assert source.admit(("192.168.1.20", 4002), voice())
    # Behind NAT a re-INVITE learns again, by the same rule: only from the peer's IP.
    nat = RtpSource(peer="93.184.216.34")
    nat.expect(("10.0.0.5", 4000), [0, 101])
    assert nat.admit(("93.184.216.34", 30000), voice())
    nat.expect(("10.0.0.5", 4002), [0, 101])
    assert nat.learning == "93.184.216.34"
    assert not nat.admit(("198.51.100.9", 30002), press(1, 1000))
    assert nat.admit(("93.184.216.34", 30002), voice())
    assert nat.destination == ("93.184.216.34", 30002)


def test_a_public_sdp_address_is_never_learned_from_elsewhere():
    source = RtpSource(peer="93.184.216.34")
    source.expect(("93.184.216.34", 4000), [0, 101])
    assert not source.admit(("93.184.216.34", 4001), voice())  # same host, other port
    assert not source.admit(("8.8.4.4", 4000), voice())
    assert source.admit(("93.184.216.34", 4000), voice())
    assert (source.latched, source.dropped) == (("93.184.216.34", 4000), 2)


def test_the_sdp_address_takes_the_latch_over_from_a_source_learned_first():
    source = RtpSource(peer="93.184.216.34")
    source.expect(("10.0.0.5", 4000), [0, 101])
    assert source.admit(("93.184.216.34", 5000), voice())  # learned: the peer is behind NAT
    assert source.admit(("10.0.0.5", 4000), voice())  # but the peer is reachable after all
    assert source.destination == ("10.0.0.5", 4000)
    assert not source.admit(("93.184.216.34", 5000), press(1, 1000))
    assert source.dropped == 1


def test_on_hold_nothing_is_learned_and_nothing_is_sent():
    source = RtpSource(peer="93.184.216.34")
    source.expect(("0.0.0.0", 4000), [0, 101])  # RFC 2543 hold
    assert source.destination is None
    assert source.learning is None
    assert not source.admit(("93.184.216.34", 5000), voice())


def test_on_a_hold_by_address_the_phone_is_still_heard_and_nobody_new() -> None:
    # a3_variants.py case B: hold with c=0.0.0.0, then a digit pressed on hold from the
    # phone's own RTP socket. Before, it was dropped as coming from a forged source.
    source = RtpSource(peer="192.168.1.20")
    source.expect(("192.168.1.20", 4000), [0, 101])
    source.expect(("0.0.0.0", 4000), [0, 101])
    assert source.destination is None
    assert source.admit(("192.168.1.20", 4000), press(1, 1000))
    assert not source.admit(("192.168.1.66", 4000), press(1, 2000))
    assert not source.admit(("192.168.1.20", 4001), press(1, 3000))
    source.expect(("192.168.1.20", 4000), [0, 101])  # back: the latch stands
    assert source.latched == source.destination == ("192.168.1.20", 4000)
    # Behind NAT: a source latched before the hold is still heard on hold ...
    nat = RtpSource(peer="93.184.216.34")
    nat.expect(("10.0.0.5", 4000), [0, 101])
    assert nat.admit(("93.184.216.34", 30000), voice())
    nat.expect(("::", 4000), [0, 101])
    assert nat.admit(("93.184.216.34", 30000), press(1, 1000))
    assert not nat.admit(("93.184.216.34", 30002), press(1, 2000))
    # ... but nothing is learned on hold, not even from the peer's IP.
    fresh = RtpSource(peer="93.184.216.34")
    fresh.expect(("10.0.0.5", 4000), [0, 101])
    fresh.expect(("0.0.0.0", 4000), [0, 101])
    assert fresh.learning is None
    assert not fresh.admit(("93.184.216.34", 30000), voice())


async def test_a_digit_pressed_on_a_hold_by_address_counts(
    call: Call, peers: tuple[Peer, Peer]
) -> None:
    phone, forger = peers
    answered(call, *phone.address)
    request = parse(reinvite("0.0.0.0", phone.address[1], "z9hG4bK-h1"))
    assert isinstance(request, Request)
    held = call.handle(request, (HOST, 5090))
    assert held is not None and held.status == 200 and call.on_hold
    forger.send(call, press(1, 1000))
    phone.send(call, press(1, 2000))
    await settle()
    assert call.digits.get_nowait() == "1"
    assert call.digits.empty() and call.rtp_dropped == 1
