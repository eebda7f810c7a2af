"""The member's offers inside a call: re-INVITEs (hold, address change, session refresh).

The audio is encoded in the codec agreed first, so an offer without that codec is
refused with 488 and the call goes on as it was (RFC 3261 14.2). A re-INVITE without
SDP gets an offer of ours in the 200. An offer naming a host is answered 100 at once
and 200 or 488 once its one lookup has ended (`media_host.py`): the loop never waits
for a resolver. Every SDP version we send counts up from the INVITE's (RFC 3264 8).
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import TYPE_CHECKING

from edge_agent.sip import sdp
from edge_agent.sip.errors import SdpError
from edge_agent.sip.media_host import media_literal
from edge_agent.sip.message import Request, Response, response_to
from edge_agent.sip.transport import Address

if TYPE_CHECKING:
    from edge_agent.sip.call import Call

__all__ = ["Reoffers"]

log = logging.getLogger(__name__)


class Reoffers:
    """One call's SDP session (o= id and version) and the member's offers inside it."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.pending = False  # a re-INVITE waits for its c= host's lookup
        self.session = random.getrandbits(31)  # o= id; the version counts up (RFC 3264 8)
        self.version = self.session

    def reinvite(self, request: Request, source: Address) -> Response:
        """The answer to a re-INVITE: 200 with our SDP, 488, or 100 while a host is
        looked up (the final answer follows, `_answer_later`)."""
        call = self.call
        if self.pending:  # RFC 3261 14.2: one offer at a time
            busy = response_to(request, 500, "Server Internal Error")
            busy.headers.add("Retry-After", str(random.randint(1, 10)))  # noqa: S311 - a wait
            return busy
        if not request.body:  # an offer in the 200, the answer in the ACK (we keep our media)
            return self._accept(request, None, None)
        try:
            offer = sdp.parse(request.body)
            negotiated = sdp.negotiate(offer, self._running(), secure=call.crypto.secure)
            literal = media_literal(negotiated.address, call.family)
        except SdpError as exc:
            return not_acceptable(request, exc)
        if literal is not None:
            return self._accept(request, offer, replace(negotiated, address=literal))
        self.pending = True
        call.ua.background(self._answer_later(request, source, offer, negotiated))
        return response_to(request, 100, "Trying")

    async def _answer_later(
        self,
        request: Request,
        source: Address,
        offer: sdp.SessionDescription,
        negotiated: sdp.Negotiated,
    ) -> None:
        call = self.call
        try:
            try:
                resolved = await call.resolved(negotiated)
            except SdpError as exc:
                log.warning("call %s: re-INVITE refused: %s", call.call_id, exc)
                response = not_acceptable(request, exc)
            else:
                # Closed, or CANCELled meanwhile (the user agent answered 487): no change.
                if call.media is None or call.media.closed or call.ua.answered_finally(request):
                    response = response_to(request, 487, "Request Terminated")
                else:
                    response = self._accept(request, offer, resolved)
        finally:
            self.pending = False
        call.ua.answer_later(request, response, source)

    def _running(self) -> tuple[int, str] | None:
        negotiated = self.call.negotiated
        if negotiated is None:
            return None
        return negotiated.codec_pt, negotiated.codec

    def _accept(
        self,
        request: Request,
        offer: sdp.SessionDescription | None,
        negotiated: sdp.Negotiated | None,
    ) -> Response:
        """The 200 with our SDP: the answer to `offer` (its address resolved), or without
        an offer one of our own."""
        call = self.call
        assert call.media is not None
        host, port = call.ua.transport.local[0], call.media.port
        running = self._running()
        response = response_to(request, 200, "OK")
        response.headers.add("Contact", call.ua.contact)
        version = self.version + 1
        if offer is not None and negotiated is not None:
            try:
                crypto = call.crypto.reoffered(offer.proto, offer.crypto)  # never plain after SRTP
                body = sdp.answer(
                    offer,
                    host,
                    port,
                    self.session,
                    session_version=version,
                    running=running,
                    crypto=crypto,
                )
            except SdpError as exc:
                return not_acceptable(request, exc)
            call.negotiated = negotiated
            call.hold.follow(offer, call.call_id)
            response.body = body
        else:
            payloads = (8, 0, 101) if running is None else (running[0], 101)
            response.body = sdp.offer(
                host,
                port,
                self.session,
                payloads=payloads,
                session_version=version,
                proto=call.crypto.session_proto,
                crypto=call.crypto.session_lines(),
            )
        self.version = version
        response.headers.add("Content-Type", "application/sdp")
        return response


def not_acceptable(request: Request, reason: Exception) -> Response:
    return response_to(request, 488, f"Not Acceptable Here ({reason})"[:80])
