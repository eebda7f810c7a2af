"""One incoming call, the user agent server's side of its dialog (RFC 3261 12.1.1, 13.3).

`incoming.IncomingCalls` makes it for an INVITE its router accepted and answers
100 at once; `answer()` then answers the offer: 180 while it rings (if at all),
200 with our SDP (PCMA/PCMU and telephone-event, the same as our own offers, SRTP
as RUNDRUF_AGENT_SIP_SRTP says), or 488 when nothing fits. An INVITE without SDP
(a late offer) gets our offer in the 200 and brings its answer in the ACK. The final answer is
repeated until its ACK (`invite_server.py`, through `UserAgent.answer_later`); a
CANCEL before it gets the INVITE 487 instead, and the call never starts.

The dialog: our tag in To, the caller's From tag, the route set from the INVITE's
Record-Route in its order, the remote target from its Contact. Only the caller's
hosts may speak in it (`dialog_match.py`: the INVITE's source, its Contact, the
proxy nearest us). Our requests (BYE) go to the outbound proxy when there is one,
else along the route set, else to the remote target. A 2xx whose ACK does not
come within CALL_ACK_WAIT_S ends the call, without a BYE (13.3.1.4 allows 64 x T1, but a
caller that has not acknowledged in 8 s has given up; the slot must not wait 32 s,
review of issue 16, finding 2; no BYE: second review, finding 2). Over TCP, a call whose
connection closed before its ACK ends at once: the caller is gone (an IVR over TCP sends
its ACK on it).

Media and in-dialog requests are `media_leg.MediaLeg`'s, the same as an outgoing
call's: RFC 4733 and INFO keys, hold and re-INVITEs, source latching, SRTP. Our RTP
goes only where it cannot be aimed at a third party (review of issue 16, finding 5):
the SDP's address when it is the INVITE's source host or one the router trusts (the
PBX's; any, when the INVITE came from the PBX itself: second review, finding 4), else
only once the caller's RTP came from there (symmetric RTP); until then
nothing is sent, and a prompt waits up to 1 s for it; at most 200 RTP packets a second
are looked at (finding 6). Both are `incoming_rtp.GuardedLeg`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable

from edge_agent.sip import sdp
from edge_agent.sip.dialog_match import DialogPeer
from edge_agent.sip.errors import SdpError, SipError
from edge_agent.sip.incoming_rtp import GuardedLeg
from edge_agent.sip.media_host import MediaHostResolver
from edge_agent.sip.media_leg import MediaSocket
from edge_agent.sip.message import Request, Response, new_tag, parse_name_addr, response_to
from edge_agent.sip.srtp import Mode
from edge_agent.sip.transport import Address
from edge_agent.sip.ua import ALLOW, T1, SipTimeout, UserAgent

__all__ = ["IncomingCall", "State"]

log = logging.getLogger(__name__)

MAX_QUEUED_KEYS = 64  # keys waiting to be read; more are dropped
ACK_WAIT_S = 64 * T1  # a refusal's ACK (RFC 3261 17.2.1): the dialog is kept as long
CALL_ACK_WAIT_S = 8.0  # our 2xx's ACK: a caller still there sends it within a second
CONNECTION_CHECK_S = 0.5  # TCP: how often a call waiting for its ACK looks at its connection


class State(enum.Enum):
    RINGING = "ringing"  # 100 (or 180) sent, no final answer yet
    ANSWERED = "answered"  # 200 sent, no ACK yet
    CONFIRMED = "confirmed"  # the ACK came: the call is up
    ENDED = "ended"  # refused, cancelled, hung up, or no ACK


class IncomingCall(GuardedLeg):
    """The dialog and media of one incoming call (see the module text)."""

    def __init__(
        self,
        ua: UserAgent,
        invite: Request,
        source: Address,
        *,
        srtp: Mode = "off",
        proxy: Address | None = None,
        resolver: MediaHostResolver | None = None,
        media_trusted: Callable[[str], bool] | None = None,
    ) -> None:
        """Raises SipError for an INVITE without a usable Contact or From (400)."""
        super().__init__(ua, resolver=resolver, srtp=srtp)
        self.invite = invite
        self.source = source
        self.proxy = proxy
        self.guard_media(media_trusted)
        contacts = invite.headers.get_all("Contact")
        if not contacts or contacts[0].strip() == "*":
            raise SipError("an INVITE without Contact")
        target = parse_name_addr(contacts[0], any_scheme=False).uri
        if target.scheme not in ("sip", "sips") or not target.host:
            raise SipError("an INVITE whose Contact is no SIP URI")  # nowhere to send a BYE
        self.remote_target = str(target)
        self.remote = invite.headers.get("From") or ""  # the caller, with its tag
        parse_name_addr(self.remote)  # raises SipError
        self.local_tag = new_tag()
        self.local = f"{invite.headers.get('To') or ''};tag={self.local_tag}"
        # The route set (RFC 3261 12.1.1): the INVITE's Record-Route as it stands.
        self.route = invite.headers.get_all("Record-Route")
        self.peer = DialogPeer(self.local_tag, remote_tag=invite.from_tag or "")
        self.peer.expect_from(source[0])
        self.peer.expect_from(parse_name_addr(contacts[0]).uri.host)
        if self.route:
            with contextlib.suppress(SipError):
                self.peer.expect_from(parse_name_addr(self.route[0]).uri.host)
        self.rtp_source.peer = source[0]
        self.cseq = 0  # ours, for the BYE
        self.state = State.RINGING
        self.acked = asyncio.Event()
        # The caller is gone or the call is over: BYE either way, CANCEL, no ACK.
        self.gone = asyncio.Event()
        self.ended_by = ""  # "bye", "cancel", "no ack", "refused", "hung up"
        self._bye_sent = False
        self._ack_timer: asyncio.TimerHandle | None = None
        self._refused = False  # a final non-2xx of ours waits for its ACK
        self._offered = False  # the INVITE had no offer: ours is in the 200
        self.digits = asyncio.Queue(maxsize=MAX_QUEUED_KEYS)  # bounded: a flood drops
        self.presses = 0  # keys in all: a prompt with barge-in stops at the next one
        self._pressed = asyncio.Event()
        self.finished = asyncio.Event()  # the dialog is forgotten
        self.caller_number = ""  # as the router was told (incoming.py's cap per caller)
        # The handler says the caller passed its check (the PIN): the limits of the
        # stage before end here (incoming.py, Accept.pin_stage_s).
        self.authenticated = asyncio.Event()

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    def open_media(self) -> None:
        """The RTP socket on our SIP address; raises OSError when none can be had."""
        self.media = MediaSocket(self, self.ua.transport.local[0])

    # ---------------------------------------------------------------- answering

    def _response(self, status: int, reason: str) -> Response:
        return response_to(self.invite, status, reason, self.local_tag)

    async def answer(self, ring_s: float = 0.0) -> bool:
        """Rings `ring_s` (180) and answers: True once the 200 is out; False when the call
        ended before (a CANCEL, an offer we cannot take: 488)."""
        if ring_s > 0 and self.state is State.RINGING:
            self.ua.reply(self._response(180, "Ringing"), self.source)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), ring_s)
        if self.state is not State.RINGING:
            return False
        if self._connection_gone():  # the caller hung up (TCP) before we answered
            self._end("connection closed")
            self.close()
            return False
        try:
            body = await self._answer_offer()
        except SdpError as exc:
            log.info("incoming call %s: the offer cannot be taken: %s", self.call_id, exc)
            self.refuse(488, f"Not Acceptable Here ({exc})"[:80])
            return False
        if self.state is not State.RINGING:  # cancelled while a host was looked up
            return False
        ok = self._response(200, "OK")
        ok.headers.add("Contact", self.ua.contact)
        for route in self.route:  # RFC 3261 12.1.1: copied into the 2xx
            ok.headers.add("Record-Route", route)
        ok.headers.add("Allow", ALLOW)
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = body
        self.state = State.ANSWERED
        self.ua.answer_later(self.invite, ok, self.source)
        loop = asyncio.get_running_loop()
        self._ack_timer = loop.call_later(CALL_ACK_WAIT_S, self._no_ack)
        if self.ua.transport.name == "TCP":
            loop.call_later(CONNECTION_CHECK_S, self._watch_connection)
        return True

    def _connection_gone(self) -> bool:
        """Over TCP (not TLS: that is our own connection to the PBX, made again when lost),
        whether the connection the INVITE came on has closed."""
        if self.ua.transport.name != "TCP":
            return False
        streams = getattr(self.ua.transport, "streams", None)
        if not isinstance(streams, dict):
            return False
        stream = streams.get(self.source)
        writer = getattr(stream, "writer", None)
        return stream is None or writer is None or writer.is_closing()

    def _watch_connection(self) -> None:
        if self.state is not State.ANSWERED:
            return
        if self._connection_gone():
            log.info("incoming call %s: its connection closed before the ACK", self.call_id)
            self.ua.background(self.hang_up("connection closed"))
            return
        asyncio.get_running_loop().call_later(CONNECTION_CHECK_S, self._watch_connection)

    async def _answer_offer(self) -> bytes:
        """Our SDP: the answer to the INVITE's offer; raises SdpError when none fits."""
        assert self.media is not None
        if not self.invite.body:  # a late offer: ours goes in the 200, the answer in the ACK
            self._offered = True
            return sdp.offer(
                self.ua.transport.local[0],
                self.media.port,
                self.reoffers.session,
                proto=self.crypto.offer_proto,
                crypto=self.crypto.offer_lines(),
            )
        offer = sdp.parse(self.invite.body)
        negotiated = sdp.negotiate(offer, secure=self.crypto.mode != "off")
        crypto = self.crypto.answer_offer(offer.proto, offer.crypto)
        negotiated = await self.resolved(negotiated)
        session = self.reoffers.session
        body = sdp.answer(
            offer, self.ua.transport.local[0], self.media.port, session, crypto=crypto
        )
        self.negotiated = negotiated
        self.hold.follow(offer, self.call_id)
        return body

    def refuse(self, status: int, reason: str) -> None:
        """A final non-2xx answer to the INVITE (still ringing), repeated until its ACK."""
        if self.state is not State.RINGING:
            return
        self._end("refused")
        self.ua.answer_later(self.invite, self._response(status, reason), self.source)
        self._forget_later()

    def cancel(self, cancel: Request, source: Address) -> Response:
        """A CANCEL of the INVITE (RFC 3261 9.2): 487 for it while it rings, and 200."""
        if not self.peer.admits(source):
            return response_to(cancel, 403, "Forbidden (not the caller)")
        ok, ended = self.ua.server_invites.cancel(cancel)
        if ok.status != 200:
            return ok  # another branch: no CANCEL of this INVITE
        if ended is not None and self.state is State.RINGING:
            self._end("cancel")
            # After the CANCEL's own 200, which the user agent sends on our return.
            terminated = self._response(487, "Request Terminated")
            loop = asyncio.get_running_loop()
            loop.call_soon(self.ua.answer_later, self.invite, terminated, self.source)
            self._forget_later()
        return response_to(cancel, 200, "OK", self.local_tag)

    def _no_ack(self) -> None:
        if self.state is State.ANSWERED:
            log.warning(
                "incoming call %s: no ACK for our 200 within %g s", self.call_id, CALL_ACK_WAIT_S
            )
            self.ua.background(self.hang_up("no ack"))

    # ---------------------------------------------------------------- in the dialog

    def key(self, digit: str) -> None:
        for one in digit:  # a packet may carry several presses (RFC 4733 2.5.1.5)
            self.presses += 1
            super().key(one)
        self._pressed.set()

    async def pressed_after(self, count: int) -> None:
        """Returns once more than `count` keys have been pressed in all."""
        while self.presses <= count:
            self._pressed.clear()
            await self._pressed.wait()

    def handle(self, request: Request, source: Address) -> Response | None:
        if request.method == "ACK" and request.cseq[0] == self.invite.cseq[0]:
            if self.state is State.ANSWERED:
                self.state = State.CONFIRMED
                if self._ack_timer is not None:
                    self._ack_timer.cancel()
                if self._offered:
                    self._answer_in(request)
                else:
                    self.acked.set()
            elif self._refused:
                self._forget()  # the ACK of our refusal or 487
            return None
        response = super().handle(request, source)
        if request.method == "BYE":
            self._end("bye")
        return response

    def _answer_in(self, ack: Request) -> None:
        """The ACK's answer to the offer in our 200 (RFC 3261 13.2.1): the call's media
        once its address is known; without a usable one the call ends (14.2: BYE)."""
        try:
            answer = sdp.parse(ack.body)
            negotiated = sdp.negotiate(answer, secure=self.crypto.mode != "off")
            self.crypto.answered(answer.proto, answer.crypto)
        except SdpError as exc:
            log.warning("incoming call %s: no usable answer in the ACK: %s", self.call_id, exc)
            self.ua.background(self.hang_up("no media"))
            return
        self.ua.background(self._media_from(answer, negotiated))

    async def _media_from(self, answer: sdp.SessionDescription, offer: sdp.Negotiated) -> None:
        try:
            negotiated = await self.resolved(offer)
        except SdpError as exc:
            log.warning("incoming call %s: the ACK's media: %s", self.call_id, exc)
            await self.hang_up("no media")
            return
        if self.state is State.CONFIRMED:
            self.negotiated = negotiated
            self.hold.follow(answer, self.call_id)
            self.acked.set()  # the handler starts with the media known

    # ---------------------------------------------------------------- the end

    def _end(self, why: str) -> None:
        if self.state is State.ENDED:
            return
        if self.state is State.ANSWERED:  # a BYE before the ACK: our 200 is not repeated
            self.ua.server_invites.acknowledged(self.invite)  # (review of issue 16, finding 9)
        self.state = State.ENDED
        self.ended_by = why
        self.gone.set()
        if self._ack_timer is not None:
            self._ack_timer.cancel()

    async def hang_up(self, why: str = "hung up") -> None:
        """Ends the call: BYE when it was answered and the caller has not hung up, 480
        while it still rings; the media closes. Safe to call more than once."""
        if self.state is State.RINGING:
            self.refuse(480, "Temporarily Unavailable")
            self.close()
            return
        # A call never acknowledged gets no BYE (RFC 3261 13.3.1.4 says it should): a
        # forged INVITE would make us send it to whatever its Contact names (second
        # review of issue 16, finding 2); the 2xx is no longer repeated either (_end).
        answered = self.state is State.CONFIRMED
        self._end(why)
        try:
            if answered and not self.remote_bye.is_set() and not self._bye_sent:
                self._bye_sent = True
                await self._bye()
        finally:
            self.close()

    def drop(self) -> None:
        """Ends a call not yet acknowledged without a word to the caller (incoming.py's
        cap on such calls): its 200 is not repeated, no BYE, the media closes."""
        if self.state in (State.RINGING, State.ANSWERED):
            self._end("dropped")
            self.close()

    async def _bye(self) -> None:
        self.cseq += 1
        bye = self.ua.new_request(
            "BYE",
            self.remote_target,
            self.remote,
            call_id=self.call_id,
            from_tag=self.local_tag,
            cseq=self.cseq,
        )
        bye.headers.set("From", self.local)  # our URI in this dialog: the INVITE's To
        bye.headers.remove("Contact")
        bye.learn_peer = False  # the caller is no peer of ours for it (finding 10)
        for route in self.route:
            bye.headers.add("Route", route)
        try:
            await self.ua.send_request(bye, self.destination())
        except (SipError, SipTimeout, OSError) as exc:
            log.info("BYE of incoming call %s: %s", self.call_id, exc)

    def destination(self) -> Address:
        """Where our requests in the dialog go: the outbound proxy, the first hop of the
        route set, or the remote target (RFC 3261 12.2.1.1, 8.1.2)."""
        if self.proxy is not None:
            return self.proxy
        first = self.route[0] if self.route else f"<{self.remote_target}>"
        uri = parse_name_addr(first, any_scheme=False).uri
        return uri.host, uri.port or (5061 if uri.scheme == "sips" else 5060)

    def close(self) -> None:
        """Closes the media; the dialog is forgotten now, or, while a refusal of ours
        waits for its ACK, when that comes (or after ACK_WAIT_S)."""
        self.close_media(self.call_id)
        if not self._refused:
            self._forget()

    def _forget_later(self) -> None:
        self._refused = True
        self.close_media(self.call_id)
        asyncio.get_running_loop().call_later(ACK_WAIT_S, self._forget)

    def _forget(self) -> None:
        """The dialog is over: requests naming it get 481 from now on."""
        if self.ua.dialogs.get(self.call_id) is self:
            del self.ua.dialogs[self.call_id]
        self.finished.set()
