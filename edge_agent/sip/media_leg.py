"""The media side of one call leg, outgoing (`call.Call`) or incoming (`incoming_call.py`).

What both directions share: the RTP socket, the negotiated codec and the peer's
address (`media_source.py` decides whose packets count), SRTP (`srtp.py`), the
peer's keys (RFC 4733 events on RTP and SIP INFO, both into `digits`), its hold
(`hold.py`), its re-INVITEs (`reoffer.py`) and its BYE. Sending goes through the
shared pacer (`send_rtp`). Audio packets are parsed only when someone listens
(`audio`: an incoming call's recording); an outgoing call reads only its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import replace

from edge_agent.sip import sdp
from edge_agent.sip.dialog_match import DialogPeer
from edge_agent.sip.dtmf_info import dtmf_from_info
from edge_agent.sip.errors import RtpParseError
from edge_agent.sip.hold import PeerHold
from edge_agent.sip.media_host import MediaHostResolver, default_resolver
from edge_agent.sip.media_source import RtpSource
from edge_agent.sip.message import Request, Response, response_to
from edge_agent.sip.reoffer import Reoffers
from edge_agent.sip.rtp import DtmfDetector, RtpPacket
from edge_agent.sip.srtp import CallCrypto, Mode
from edge_agent.sip.transport import Address
from edge_agent.sip.ua import ALLOW, UserAgent
from edge_agent.sip.udp import UdpSocket

__all__ = ["RTP_MAX_BYTES", "MediaLeg", "MediaSocket"]

log = logging.getLogger(__name__)

# An RTP packet's largest size here: G.711's 20 ms are 172 bytes with the header, an
# RFC 4733 event fewer. Windows' proactor keeps one receive buffer this big per call.
RTP_MAX_BYTES = 2048


class MediaSocket:
    """The call's RTP socket, opened without a loop pass: bound, non-blocking, read by
    the loop (`udp.UdpSocket`). Sending is a plain ``sendto`` (the pacer counts a
    failure as a lost packet); the socket stays unconnected, so that the call can
    latch the source the peer's packets really come from (`media_source.py`)."""

    def __init__(self, call: MediaLeg, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, 0))
            self.port: int = sock.getsockname()[1]
            self.family = family
            # A burst at most per wake-up, then the rest of the loop gets its turn.
            self._udp = UdpSocket(sock, call.on_rtp, batch=32, max_size=RTP_MAX_BYTES)
        except BaseException:
            sock.close()
            raise
        self.sendto = self._udp.sendto
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._udp.close()


class MediaLeg:
    """One leg's media and in-dialog requests (see the module text)."""

    def __init__(
        self, ua: UserAgent, *, resolver: MediaHostResolver | None = None, srtp: Mode = "off"
    ) -> None:
        self.ua = ua
        self.local_tag = ""  # set by the leg before its dialog starts
        self.peer = DialogPeer(self.local_tag)  # who may speak in the dialog
        self.media: MediaSocket | None = None
        self._negotiated: sdp.Negotiated | None = None
        # Whose RTP is heard and where ours goes (issue 15, point 1).
        self.rtp_source = RtpSource()
        # SDES-SRTP (issue 15, point 9): our key, the peer's, both directions.
        self.crypto = CallCrypto(srtp)
        self._resolver = resolver or default_resolver
        self.reoffers = Reoffers(self)  # the SDP session, the peer's re-INVITEs
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.remote_bye = asyncio.Event()
        # The peer's SDP wants none of our audio (issue 15, point 7): nothing is sent
        # meanwhile; each change is queued for whoever plays, which pauses.
        self.hold = PeerHold()
        self.ssrc = random.getrandbits(32)
        self._detector = DtmfDetector()
        # Who hears the peer's audio packets (a recording); None: they are not parsed.
        self.audio: Callable[[RtpPacket], None] | None = None

    @property
    def call_id(self) -> str:
        raise NotImplementedError

    # ---------------------------------------------------------------- media

    async def resolved(self, negotiated: sdp.Negotiated) -> sdp.Negotiated:
        """`negotiated` with its address as an IP literal: a host name is looked up once
        here, off the loop and bounded in time (never by ``sendto`` for each packet);
        raises UnresolvableHost (an SdpError) when it gives no address in time."""
        address = await self._resolver.resolve(negotiated.address, negotiated.port, self.family)
        return replace(negotiated, address=address)

    @property
    def family(self) -> int:
        """The address family of the call's RTP socket: the SDP's must be the same."""
        return self.media.family if self.media is not None else socket.AF_INET

    @property
    def on_hold(self) -> bool:
        """Whether the peer has the call on hold now (`hold.py`)."""
        return self.hold.on_hold

    @property
    def holds(self) -> asyncio.Queue[bool]:
        """Each change of `on_hold`, for whoever plays."""
        return self.hold.changes

    @property
    def rtp_dropped(self) -> int:
        """RTP datagrams dropped for coming from a source other than the peer's."""
        return self.rtp_source.dropped

    def close_media(self, name: str) -> None:
        """Closes the RTP socket, logging what was dropped (`name`: the call's)."""
        media = self.media
        if media is None or media.closed:
            return
        if self.crypto.rejected:
            log.warning(
                "call %s: %d SRTP packets failed authentication or the replay check",
                name,
                self.crypto.rejected,
            )
        if self.rtp_source.dropped:
            log.warning(
                "call %s: %d RTP packets from sources other than %s dropped",
                name,
                self.rtp_source.dropped,
                self.rtp_source.latched or self.rtp_source.expected,
            )
        media.close()

    def send_rtp(self, packet: bytes) -> None:
        """Sends one RTP packet to the peer (where its packets come from, once they do:
        symmetric RTP, RFC 4961), nothing while on hold; OSError (a full buffer) is the caller's."""
        packet = self.crypto.outgoing(packet)  # SRTP once keyed; b"" where plain may not go
        if not packet:
            return
        to = self.rtp_source.destination
        if to is not None and not self.on_hold and self.media is not None and not self.media.closed:
            self.media.sendto(packet, to)

    @property
    def negotiated(self) -> sdp.Negotiated | None:
        return self._negotiated

    @negotiated.setter
    def negotiated(self, value: sdp.Negotiated | None) -> None:
        """Set from an SDP whose address is an IP literal already (`resolved`)."""
        self._negotiated = value
        if value is not None:
            types = [value.codec_pt]
            if value.event_pt is not None:
                types.append(value.event_pt)
            self.rtp_source.expect((value.address, value.port), types)

    def on_rtp(self, data: bytes, source: Address) -> None:
        negotiated = self.negotiated
        if negotiated is None:
            return
        if self.crypto.mode != "off":
            # Authenticated (and decrypted) before anything reads it or latches its source;
            # a forged or replayed packet is dropped here and counted (`crypto.rejected`).
            data = self.crypto.incoming(data)
            if not data:
                return
        if not self.rtp_source.admit(source, data):
            if self.rtp_source.dropped == 1:  # once per call here; the count at the end
                log.warning(
                    "call %s: RTP from %s dropped: the peer's comes from %s",
                    self.call_id,
                    source,
                    self.rtp_source.latched or self.rtp_source.expected,
                )
            return
        if len(data) < 12:
            return
        payload_type = data[1] & 0x7F
        if payload_type == negotiated.event_pt:
            packet = _parsed(data)
            if packet is None:
                return
            try:
                digit = self._detector.feed(packet)
            except RtpParseError:
                return  # not ours to judge: media from a phone is best effort
            if digit is not None:
                self.key(digit)
        elif payload_type == negotiated.codec_pt and self.audio is not None:
            # The voice is parsed only while someone listens (an incoming call's recording).
            packet = _parsed(data)
            if packet is not None:
                self.audio(packet)

    def key(self, digit: str) -> None:
        """A key from the peer (RFC 4733 or INFO) into `digits`; dropped when it is full."""
        with contextlib.suppress(asyncio.QueueFull):
            self.digits.put_nowait(digit)

    # ---------------------------------------------------------------- in the dialog

    def handle(self, request: Request, source: Address) -> Response | None:
        """In-dialog requests from the peer (the user agent routes them here)."""
        method = request.method
        if method == "ACK":  # of a re-INVITE's 200: the answer to our offer, if it had one
            self.reoffers.acknowledged(request)
            return None
        if method == "BYE":
            self.remote_bye.set()
            return response_to(request, 200, "OK")
        if method == "INFO":
            digit = dtmf_from_info(request)
            if digit is not None:
                self.key(digit)
            return response_to(request, 200, "OK")
        if method == "INVITE" and self.media is not None and not self.media.closed:
            return self.reoffers.reinvite(request, source)
        if method in ("OPTIONS", "NOTIFY"):
            return response_to(request, 200, "OK")
        if method == "CANCEL":
            return response_to(request, 481, "Call/Transaction Does Not Exist")
        # UPDATE (RFC 3311) among them: a 200 without an answer to its offer would leave
        # the peer believing the call is on hold while we send (RFC 3261 8.2.1: Allow).
        refused = response_to(request, 405, "Method Not Allowed")
        refused.headers.add("Allow", ALLOW)
        return refused


def _parsed(data: bytes) -> RtpPacket | None:
    try:
        return RtpPacket.parse(data)
    except RtpParseError:
        return None  # not ours to judge: media from a phone is best effort
