"""Which address a call's RTP may come from, and where ours goes (symmetric RTP).

A call's RTP port hears every datagram sent to it. Before issue 15 a telephone-event
"1" from any address confirmed the call. Now (docs/decisions/rtp-source-latching.md):

- the SDP (answer or re-offer) names the peer's address and port: packets from
  exactly there are accepted, and the first one latches it;
- when that address cannot be where the peer's packets come from (a private,
  shared or link-local one: the peer is behind NAT), the first packet from
  elsewhere that is RTP version 2 with a payload type of the SDP latches its
  source instead (RFC 4961 symmetric RTP; Asterisk and FreeSWITCH learn alike);
- once latched, only that source is heard; everything else is dropped and counted,
  except the SDP's own address:port, which takes the latch over when it shows up
  (the peer was reachable after all, and what latched first was somebody else);
- our RTP goes to the latched source, before that to the SDP's address (nowhere
  while that is 0.0.0.0 or ::, the old way of putting a call on hold, RFC 3264 8.4);
- a new SDP naming another address or port starts over; the same one keeps the latch.

Pure: addresses in, decisions out; the call feeds it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["RtpSource", "behind_nat"]

Address = tuple[str, int]


def behind_nat(host: str) -> bool:
    """Whether an SDP address is one the peer's packets cannot come from on their way to
    us: private (RFC 1918, RFC 4193), shared (RFC 6598) or link-local. Loopback and
    global addresses are taken as they are; on hold (unspecified) nothing is learned."""
    ip = ipaddress.ip_address(host)
    return not (ip.is_global or ip.is_loopback or ip.is_multicast or ip.is_unspecified)


class RtpSource:
    """The expected and the latched source of one call's RTP, and the count dropped."""

    __slots__ = ("_hold", "_learn", "_payload_types", "dropped", "expected", "latched")

    def __init__(self) -> None:
        self.expected: Address | None = None  # what the SDP names
        self.latched: Address | None = None  # where the peer's packets really come from
        self.dropped = 0
        self._payload_types: frozenset[int] = frozenset()
        self._learn = False
        self._hold = False

    def expect(self, address: Address, payload_types: Iterable[int]) -> None:
        """An SDP names `address` (an IP literal) with these payload types."""
        self._payload_types = frozenset(payload_types)
        address = (str(ipaddress.ip_address(address[0])), address[1])
        if address == self.expected:  # a session refresh: the latch stands
            return
        self.expected = address
        self.latched = None
        self._learn = behind_nat(address[0])
        self._hold = ipaddress.ip_address(address[0]).is_unspecified

    @property
    def destination(self) -> Address | None:
        """Where our RTP goes: the latched source, else the SDP's address."""
        if self.latched is not None:
            return self.latched
        return None if self._hold else self.expected

    def admit(self, source: Address, data: bytes) -> bool:
        """Whether the datagram `data` from `source` is the peer's; counts it if not."""
        if source == self.latched:
            return True
        if source == self.expected:
            self.latched = source
            return True
        if self.latched is None and self._learn and self._fits(data):
            self.latched = source
            return True
        self.dropped += 1
        return False

    def _fits(self, data: bytes) -> bool:
        # RTP version 2 with a payload type the SDP offered (RFC 3550 5.1); RTCP and
        # STUN have other first bytes or types outside it.
        return len(data) >= 12 and data[0] >> 6 == 2 and data[1] & 0x7F in self._payload_types
