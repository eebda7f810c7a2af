"""The member's offers inside a call: re-INVITEs (hold, address change, session refresh).

The audio is encoded in the codec agreed first, so an offer without that codec is
refused with 488 and the call goes on as it was (RFC 3261 14.2). An offer naming a
host is answered 100 at once and 200 or 488 once its one lookup has ended
(`media_host.py`): the loop never waits for a resolver. Every SDP version we send
counts up from the INVITE's (RFC 3264 8).

A re-INVITE without SDP gets an offer of ours in the 200, and the member's answer
comes in the ACK (RFC 3261 13.2.1; music on hold and third party call control,
RFC 3725, RFC 5359): the ACK's answer moves the media and puts the call on hold or
takes it back, as an offer would. Our offer says `sendrecv`, what we want, also
while the member has the call on hold: an answer to a `recvonly` offer could only be
`sendonly` or `inactive` (RFC 3264 6.1), so mirroring the hold in our offer would
keep the member from ever taking the call back this way. Until the answer comes the
call stays as it was (docs/decisions/sip-hold.md).

A member's re-INVITEs are bounded: REINVITE_BURST at once, then one per
REINVITE_EVERY_S; one beyond gets 500 with Retry-After (RFC 3261 14.2) and changes
nothing. A phone holding and resuming in a loop made a journal entry, a log line and
a restart of the message each time (the outside review: 2,000 in 4 s).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from edge_agent.sip import sdp
from edge_agent.sip.errors import SdpError
from edge_agent.sip.media_host import media_literal
from edge_agent.sip.message import Request, Response, response_to
from edge_agent.sip.transport import Address

if TYPE_CHECKING:
    from edge_agent.sip.media_leg import MediaLeg

__all__ = ["REINVITE_BURST", "REINVITE_EVERY_S", "Reoffers"]

log = logging.getLogger(__name__)

REINVITE_BURST = 10  # re-INVITEs a call takes at once ...
REINVITE_EVERY_S = 1.0  # ... and then one a second


class _Budget:
    """A token bucket: `take()` says whether one more fits, else how long until one does."""

    __slots__ = ("_at", "_tokens")

    def __init__(self) -> None:
        self._tokens = float(REINVITE_BURST)
        self._at = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until the next one."""
        now = time.monotonic()
        self._tokens = min(REINVITE_BURST, self._tokens + (now - self._at) / REINVITE_EVERY_S)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) * REINVITE_EVERY_S


class Reoffers:
    """One call's SDP session (o= id and version) and the member's offers inside it."""

    def __init__(self, call: MediaLeg) -> None:
        self.call = call
        self.pending = False  # a re-INVITE waits for its c= host's lookup
        self.session = random.getrandbits(31)  # o= id; the version counts up (RFC 3264 8)
        self.version = self.session
        # The CSeq of the re-INVITE whose 200 carries our offer: its ACK brings the answer.
        self._offered: int | None = None
        self._offers = 0  # counts the member's offers and answers: a later one wins
        self._budget = _Budget()
        self._warned = False

    def reinvite(self, request: Request, source: Address) -> Response:
        """The answer to a re-INVITE: 200 with our SDP, 488, or 100 while a host is
        looked up (the final answer follows, `_answer_later`)."""
        call = self.call
        if self.pending:  # RFC 3261 14.2: one offer at a time
            return _busy(request, random.randint(1, 10))  # noqa: S311 - a wait
        wait = self._budget.take()
        if wait:
            if not self._warned:  # once per call
                self._warned = True
                log.warning("call %s: re-INVITEs come too fast; refused for now", call.call_id)
            return _busy(request, math.ceil(wait))
        self._offers += 1
        self._offered = None  # a newer re-INVITE: an ACK's answer to the older offer lapses
        if not request.body:  # an offer in the 200, the answer in the ACK
            response = self._accept(request, None, None)
            self._offered = request.cseq[0]
            return response
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

    def acknowledged(self, ack: Request) -> None:
        """An ACK of the member's: for the 200 with our offer it brings the answer."""
        call = self.call
        if self._offered is None or ack.cseq[0] != self._offered:
            return  # an ACK of an answer of ours, or sent again: nothing to read
        self._offered = None
        if call.media is None or call.media.closed:
            return
        if not ack.body:  # RFC 3261 13.2.1: it must; without one nothing changes
            log.warning("call %s: the ACK brings no answer to our offer", call.call_id)
            return
        try:
            answer = sdp.parse(ack.body)
            negotiated = sdp.negotiate(answer, self._running(), secure=call.crypto.secure)
            literal = media_literal(negotiated.address, call.family)
            call.crypto.reanswered(answer.proto, answer.crypto)
        except SdpError as exc:
            # The member should have hung up (RFC 3261 14.2); the call goes on as it was.
            log.warning("call %s: the answer in the ACK cannot be used: %s", call.call_id, exc)
            return
        if literal is not None:
            self._answered(answer, replace(negotiated, address=literal))
        else:
            call.ua.background(self._answered_later(answer, negotiated, self._offers))

    async def _answered_later(
        self, answer: sdp.SessionDescription, negotiated: sdp.Negotiated, offers: int
    ) -> None:
        call = self.call
        try:
            resolved = await call.resolved(negotiated)
        except SdpError as exc:
            log.warning("call %s: the answer in the ACK cannot be used: %s", call.call_id, exc)
            return
        if offers == self._offers and call.media is not None and not call.media.closed:
            self._answered(answer, resolved)  # unless a newer offer came meanwhile

    def _answered(self, answer: sdp.SessionDescription, negotiated: sdp.Negotiated) -> None:
        self.call.negotiated = negotiated
        self.call.hold.follow(answer, self.call.call_id)

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


def _busy(request: Request, retry_after: int) -> Response:
    busy = response_to(request, 500, "Server Internal Error")
    busy.headers.add("Retry-After", str(retry_after))
    return busy


def not_acceptable(request: Request, reason: Exception) -> Response:
    return response_to(request, 488, f"Not Acceptable Here ({reason})"[:80])
