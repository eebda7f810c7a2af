"""Which address a call's RTP may come from, and where ours goes (symmetric RTP).

A call's RTP port hears every datagram sent to it. Before issue 15 a telephone-event
"1" from any address confirmed the call. Now (docs/decisions/rtp-source-latching.md):

- the SDP (answer or re-offer) names the peer's address and port: packets from
  exactly there are accepted, and the first one latches it. That is all, wherever
  the SDP's address can be where the peer's packets come from;
- only where it evidently cannot, a packet from elsewhere may latch: the SDP names a
  private address (RFC 1918, RFC 4193, RFC 6598, link-local) while our SIP goes to a
  global (or loopback) one, so a NAT lies between us and the network the SDP names.
  Even then only a packet from the IP our SIP goes to (the PBX, its media gateway,
  the NAT the phone's SIP comes through) may latch, never one from any other IP, and
  it must be RTP version 2 with a payload type of the SDP (RFC 4961 symmetric RTP);
- once latched, only that source is heard; everything else is dropped and counted,
  except the SDP's own address:port, which takes the latch over when it shows up;
- our RTP goes to the latched source, before that to the SDP's address;
- an SDP naming 0.0.0.0 or :: (the old way of putting a call on hold, RFC 3264 8.4)
  says where nothing goes, not where the phone's packets come from: while it holds,
  nothing is sent and nothing new is learned, but the source accepted before stays
  accepted (a digit pressed on hold comes from the phone's own socket as before);
- a new SDP naming another address or port starts over under the same rule; the same
  one keeps the latch.

Pure: addresses in, decisions out; the call feeds it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Literal

__all__ = ["RtpSource", "learnable_from", "scope"]

Address = tuple[str, int]
Scope = Literal["unspecified", "loopback", "private", "global", "other"]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Addresses a NAT hides: RFC 1918, RFC 6598 (carrier-grade NAT), RFC 3927 and RFC 4291
# link-local, RFC 4193. Not `is_private`, which also holds documentation, benchmarking
# and broadcast addresses: those are nobody's LAN.
_PRIVATE = tuple(
    ipaddress.ip_network(net)
    for net in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)


def _plain(host: str) -> IpAddress:
    """`host` as an address; an IPv4-mapped IPv6 one (::ffff:a.b.c.d) as its IPv4."""
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def scope(host: str) -> Scope:
    """Where an address can be reached from: only this host (loopback), one private
    network behind its NAT (private), anywhere (global); `other` for the rest
    (documentation, broadcast, multicast, reserved), on hold `unspecified`."""
    ip = _plain(host)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if any(ip in net for net in _PRIVATE):
        return "private"
    if ip.is_global and not ip.is_multicast:
        return "global"
    return "other"


def learnable_from(sdp_host: str, peer: str | None) -> str | None:
    """The one IP besides the SDP's address:port whose packets may latch, or None.

    Only when the SDP names a private address while our SIP goes to `peer`, a global
    or loopback address: then the peer's media cannot come from the address it names
    (a NAT rewrites the source), and the IP its signalling has is the best guess
    where it does come from. Anywhere else the SDP's address is taken at its word."""
    if peer is None or scope(sdp_host) != "private":
        return None
    try:
        peer_ip = _plain(peer)
    except ValueError:  # a host name: no address to hold a packet's source to
        return None
    if scope(str(peer_ip)) not in ("global", "loopback"):
        return None
    return str(peer_ip)


class RtpSource:
    """The expected and the latched source of one call's RTP, and the count dropped."""

    __slots__ = (
        "_hold",
        "_learn_from",
        "_payload_types",
        "dropped",
        "expected",
        "latched",
        "peer",
    )

    def __init__(self, peer: str | None = None) -> None:
        # The IP our SIP goes to (the PBX, or the phone without one): set before an SDP.
        self.peer = peer
        self.expected: Address | None = None  # what the SDP names
        self.latched: Address | None = None  # where the peer's packets really come from
        self.dropped = 0
        self._payload_types: frozenset[int] = frozenset()
        self._learn_from: str | None = None
        self._hold = False

    def expect(self, address: Address, payload_types: Iterable[int]) -> None:
        """An SDP names `address` (an IP literal) with these payload types."""
        self._payload_types = frozenset(payload_types)
        ip = ipaddress.ip_address(address[0])
        self._hold = ip.is_unspecified
        if self._hold:  # on hold: the sources accepted before stay, nothing else
            return
        address = (str(ip), address[1])
        if address == self.expected:  # a session refresh, or back from hold: the latch stands
            return
        self.expected = address
        self.latched = None
        self._learn_from = learnable_from(address[0], self.peer)

    @property
    def learning(self) -> str | None:
        """The IP a packet may latch from besides the SDP's address (None: strict)."""
        return self._learn_from if self.latched is None and not self._hold else None

    @property
    def destination(self) -> Address | None:
        """Where our RTP goes: the latched source, else the SDP's address; on hold nowhere."""
        if self._hold:
            return None
        return self.latched or self.expected

    def admit(self, source: Address, data: bytes) -> bool:
        """Whether the datagram `data` from `source` is the peer's; counts it if not."""
        if source == self.latched:
            return True
        if source == self.expected:
            self.latched = source
            return True
        learning = self.learning
        if learning is not None and source[0] == learning and self._fits(data):
            self.latched = source
            return True
        self.dropped += 1
        return False

    def _fits(self, data: bytes) -> bool:
        # RTP version 2 with a payload type the SDP offered (RFC 3550 5.1); RTCP and
        # STUN have other first bytes or types outside it.
        return len(data) >= 12 and data[0] >> 6 == 2 and data[1] & 0x7F in self._payload_types
