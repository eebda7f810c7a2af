"""One outgoing call: INVITE with SDP, ringing, answer, media, DTMF, and the hang-up.

The call owns an RTP socket; the announcement goes out through the shared
pacer. DTMF comes as SIP INFO (application/dtmf-relay or application/dtmf,
what SwyxWare sends) or as RFC 4733 events on RTP; both land in `digits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from edge_agent.sip import sdp
from edge_agent.sip.errors import DigestError, RtpParseError, SdpError, SipError
from edge_agent.sip.message import (
    NameAddr,
    Request,
    Response,
    new_tag,
    parse_name_addr,
    parse_uri,
    response_to,
)
from edge_agent.sip.rtp import DtmfDetector, RtpPacket
from edge_agent.sip.transport import Address
from edge_agent.sip.ua import UserAgent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ended:
    """How the INVITE ended when it did not bring an answer."""

    status: int
    reason: str


class _Media(asyncio.DatagramProtocol):
    def __init__(self, call: Call) -> None:
        self.call = call
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport does not subclass DatagramTransport (3.11).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.call.on_rtp(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP error: %r", exc)


_INFO_DIGITS = {str(n): str(n) for n in range(10)} | {"10": "*", "11": "#", "*": "*", "#": "#"}
_INFO_DIGITS |= {letter: letter for letter in "ABCD"} | {"12": "A", "13": "B", "14": "C", "15": "D"}


def dtmf_from_info(request: Request) -> str | None:
    """The key of a SIP INFO: application/dtmf-relay ("Signal=1") or application/dtmf ("1").

    The whole value counts: "10" and "11" are * and # (RFC 4733 event numbers), never "1".
    """
    kind = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    text = request.body.decode("utf-8", "replace").strip()
    value = None
    if kind == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, found = line.partition("=")
            if name.strip().lower() == "signal":
                value = found.strip()
                break
    elif kind == "application/dtmf":
        value = text
    return None if value is None else _INFO_DIGITS.get(value.upper())


class Call:
    def __init__(
        self,
        ua: UserAgent,
        target: str,
        extra_headers: dict[str, str],
        proxy: Address | None = None,
    ) -> None:
        self.ua = ua
        self.target = target  # request URI
        # Every request goes to the PBX when it is the proxy; else to the URI's host.
        self.proxy = proxy
        self.extra_headers = extra_headers
        self.local_tag = new_tag()
        self.remote: NameAddr | None = None  # To of the answer, with the remote tag
        self.remote_target: str | None = None  # the answer's Contact
        self.invite: Request | None = None
        self.cseq = 1
        self.media: _Media | None = None
        self.negotiated: sdp.Negotiated | None = None
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.remote_bye = asyncio.Event()
        self.ssrc = random.getrandbits(32)
        self._detector = DtmfDetector()
        self.route: list[str] = []
        self._bye_sent = False
        self._on_ringing: Callable[[], None] | None = None

    def destination(self, uri: str) -> Address:
        if self.proxy is not None:
            return self.proxy
        parsed = parse_uri(uri)
        return parsed.host, parsed.port or 5060

    @property
    def call_id(self) -> str:
        assert self.invite is not None
        return self.invite.call_id

    async def open_media(self, host: str) -> int:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _Media(self), local_addr=(host, 0)
        )
        self.media = protocol
        assert protocol.transport is not None
        return int(protocol.transport.get_extra_info("sockname")[1])

    async def start(self, ring_timeout: float, on_ringing: Callable[[], None]) -> Response | Ended:
        """Sends the INVITE and waits for the answer; cancels at the ring timeout.

        Returns the 2xx (the call is up, ACK sent) or `Ended` with the final status.
        """
        host = self.ua.transport.local[0]
        port = await self.open_media(host)
        uri = self.target
        request = self.ua.new_request("INVITE", uri, f"<{uri}>", from_tag=self.local_tag)
        request.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO")
        for name, value in self.extra_headers.items():
            request.headers.add(name, value)
        request.headers.add("Content-Type", "application/sdp")
        request.body = sdp.offer(host, port, random.getrandbits(31))
        self._on_ringing = on_ringing
        self.invite = request
        self.ua.dialogs[request.call_id] = self
        transaction = asyncio.create_task(self._invite(request))
        try:
            # Shielded: at the ring timeout the INVITE transaction goes on, to see the
            # 487 (and ACK it) or a 200 that crosses the CANCEL.
            response = await asyncio.wait_for(asyncio.shield(transaction), ring_timeout)
        except TimeoutError:
            return await self._cancel(transaction)
        except asyncio.CancelledError:
            # Stopped while ringing (the quorum, say): the phone must stop ringing too.
            self.ua.background(self._cancel(transaction))
            raise
        except SipError as exc:  # no final answer at all (Timer B), or a bad one
            self.close()
            return Ended(408, f"no answer from the PBX: {exc}")
        try:
            return await self._settle(response)
        except SipError as exc:  # an answer we cannot follow (a bad Contact, say)
            log.warning("the answer of %s cannot be used: %s", self.target, exc)
            self.close()
            return Ended(500, f"unusable answer: {exc}")

    async def _invite(self, request: Request) -> Response:
        where = self.destination(self.target)
        response = await self.ua.send_request(request, where, on_provisional=self._provisional)
        if response.status in (401, 407):
            try:
                request = self.ua.authorize(request, response)
            except DigestError as exc:
                log.warning("cannot answer the challenge for %s: %s", self.target, exc)
                return response
            self.invite = request
            self.cseq = request.cseq[0]
            response = await self.ua.send_request(request, where, on_provisional=self._provisional)
        return response

    def _provisional(self, response: Response) -> None:
        if response.status in (180, 183) and self._on_ringing is not None:
            self._on_ringing()
            self._on_ringing = None

    async def _cancel(self, transaction: asyncio.Task[Response]) -> Ended:
        """CANCEL the ringing INVITE (RFC 3261 9.1); a 200 that crosses it is hung up."""
        invite = self.invite
        assert invite is not None
        cancel = Request("CANCEL", invite.uri, invite.headers.copy())
        for name in ("Contact", "Content-Type", "Allow", *self.extra_headers):
            cancel.headers.remove(name)
        cancel.headers.set("CSeq", f"{invite.cseq[0]} CANCEL")
        try:
            # RFC 3261 9.1: a CANCEL only once the INVITE drew a provisional answer;
            # before that the INVITE transaction runs out by itself (Timer B).
            if self.ua.provisional_seen(invite):
                try:
                    await self.ua.send_request(cancel, self.destination(self.target))
                except SipError as exc:
                    log.info("CANCEL to %s: %s", self.target, exc)
            try:
                final = await asyncio.wait_for(transaction, 64 * 0.5)
            except (TimeoutError, SipError):
                return Ended(408, "no answer")
            if final.status // 100 == 2:  # answered as we cancelled: take it and hang up
                with contextlib.suppress(SipError):
                    await self._settle(final)
                await self.hang_up()
            return Ended(487, "no answer within the ring timeout")
        finally:
            transaction.cancel()
            self.close()

    async def _settle(self, response: Response) -> Response | Ended:
        if response.status // 100 != 2:
            self.close()
            return Ended(response.status, response.reason)
        self.remote = parse_name_addr(response.headers.get("To") or "")
        contact = response.headers.get_all("Contact")
        if contact and contact[0].strip() == "*":
            raise SipError("a 2xx with Contact: *")
        self.remote_target = str(parse_name_addr(contact[0]).uri) if contact else self.target
        # The route set (RFC 3261 12.1.2): the 2xx's Record-Route, reversed.
        self.route = list(reversed(response.headers.get_all("Record-Route")))
        self._ack(response)
        try:
            self.negotiated = sdp.negotiate(sdp.parse(response.body))
        except SdpError as exc:
            log.warning("the answer of %s has no usable media: %s", self.target, exc)
            await self.hang_up()
            return Ended(488, f"no usable media: {exc}")
        return response

    def _ack(self, response: Response) -> None:
        assert self.invite is not None and self.remote_target is not None
        ack = self.ua.new_request(
            "ACK",
            self.remote_target,
            response.headers.get("To") or "",
            call_id=self.invite.call_id,
            from_tag=self.local_tag,
            cseq=self.invite.cseq[0],
        )
        ack.headers.remove("Contact")
        for route in self.route:
            ack.headers.add("Route", route)
        where = self.destination(self.remote_target)
        self.ua.transport.send(ack, where)
        self.ua.remember_ack(self.invite.call_id, ack, where)

    async def hang_up(self) -> None:
        """BYE once, unless the member hung up first; then the media socket closes."""
        try:
            await self._bye()
        finally:
            self.close()

    async def _bye(self) -> None:
        if self._bye_sent or self.remote is None or self.remote_bye.is_set():
            return
        if self.invite is not None and self.remote_target is not None:
            self._bye_sent = True
            self.cseq += 1
            bye = self.ua.new_request(
                "BYE",
                self.remote_target,
                str(self.remote),
                call_id=self.invite.call_id,
                from_tag=self.local_tag,
                cseq=self.cseq,
            )
            bye.headers.remove("Contact")
            for route in self.route:
                bye.headers.add("Route", route)
            try:
                await self.ua.send_request(bye, self.destination(self.remote_target))
            except SipError as exc:
                log.info("BYE to %s: %s", self.target, exc)

    def close(self) -> None:
        if self.media is not None and self.media.transport is not None:
            self.media.transport.close()
        if self.invite is not None:
            self.ua.dialogs.pop(self.invite.call_id, None)

    # ---------------------------------------------------------------- in the dialog

    def send_rtp(self, packet: bytes) -> None:
        if self.negotiated is None or self.media is None or self.media.transport is None:
            return
        address: Address = (self.negotiated.address, self.negotiated.port)
        self.media.transport.sendto(packet, address)

    def on_rtp(self, data: bytes) -> None:
        negotiated = self.negotiated
        if negotiated is None or negotiated.event_pt is None:
            return
        # Only telephone-events matter; the member's voice is not parsed at all.
        if len(data) < 12 or data[1] & 0x7F != negotiated.event_pt:
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            return  # not ours to judge: media from a phone is best effort
        if packet.payload_type == negotiated.event_pt:
            digit = self._detector.feed(packet)
            if digit is not None:
                self.digits.put_nowait(digit)

    def handle(self, request: Request, source: Address) -> Response | None:
        """In-dialog requests from the member (the user agent routes them here)."""
        method = request.method
        if method == "ACK":
            return None
        if method == "BYE":
            self.remote_bye.set()
            return response_to(request, 200, "OK")
        if method == "INFO":
            digit = dtmf_from_info(request)
            if digit is not None:
                self.digits.put_nowait(digit)
            return response_to(request, 200, "OK")
        if method == "INVITE" and self.media is not None and self.media.transport is not None:
            return self._reinvite(request)
        if method in ("OPTIONS", "NOTIFY", "UPDATE"):
            return response_to(request, 200, "OK")
        if method == "CANCEL":
            return response_to(request, 481, "Call/Transaction Does Not Exist")
        return response_to(request, 405, "Method Not Allowed")

    def _reinvite(self, request: Request) -> Response:
        """A re-INVITE (hold, codec change, session refresh): answer with our media again."""
        assert self.media is not None and self.media.transport is not None
        host, port = self.media.transport.get_extra_info("sockname")[:2]
        response = response_to(request, 200, "OK")
        response.headers.add("Contact", self.ua.contact)
        if request.body:
            try:
                offer = sdp.parse(request.body)
                self.negotiated = sdp.negotiate(offer)
                response.body = sdp.answer(offer, str(host), int(port), random.getrandbits(31))
            except SdpError as exc:
                return response_to(request, 488, f"Not Acceptable Here ({exc})"[:80])
        else:
            response.body = sdp.offer(str(host), int(port), random.getrandbits(31))
        response.headers.add("Content-Type", "application/sdp")
        return response
