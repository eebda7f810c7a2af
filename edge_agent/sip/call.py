"""One outgoing call: INVITE with SDP, ringing, answer, media, DTMF, and the hang-up.

The call owns an RTP socket; the announcement goes out through the shared
pacer. DTMF comes as SIP INFO (application/dtmf-relay or application/dtmf,
what SwyxWare sends) or as RFC 4733 events on RTP; both land in `digits`. The
media and the member's in-dialog requests are `media_leg.MediaLeg`'s, which the
agent's incoming calls share (`incoming_call.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from edge_agent.sip import sdp
from edge_agent.sip.dialog_match import DialogPeer
from edge_agent.sip.errors import DigestError, SdpError, SipError
from edge_agent.sip.media_host import MediaHostResolver
from edge_agent.sip.media_leg import RTP_MAX_BYTES, MediaLeg, MediaSocket
from edge_agent.sip.message import (
    NameAddr,
    Request,
    Response,
    new_tag,
    parse_name_addr,
    parse_uri,
)
from edge_agent.sip.srtp import Mode
from edge_agent.sip.tls import TransportFailure
from edge_agent.sip.transport import Address
from edge_agent.sip.ua import TIMER_C, ClientTransaction, SipTimeout, UserAgent

# Kept under their old names: the media socket moved to `media_leg.py`.
_Media = MediaSocket
__all__ = ["RTP_MAX_BYTES", "Call", "Ended"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ended:
    """How the INVITE ended when it did not bring an answer."""

    status: int
    reason: str
    # A code for the attempt's detail (the website words it), e.g. "srtpRequired".
    code: str | None = None


MAX_RING_S = TIMER_C - 10.0  # a longer ring timeout would never send its CANCEL


@functools.lru_cache(maxsize=4096)
def _address_of(uri: str) -> Address:
    """Where a request to `uri` goes without a proxy: its host and port (5060)."""
    parsed = parse_uri(uri)
    return parsed.host, parsed.port or 5060


class Call(MediaLeg):
    def __init__(
        self,
        ua: UserAgent,
        target: str,
        extra_headers: dict[str, str],
        proxy: Address | None = None,
        *,
        resolver: MediaHostResolver | None = None,
        srtp: Mode = "off",
    ) -> None:
        super().__init__(ua, resolver=resolver, srtp=srtp)
        self.target = target  # request URI
        # Every request goes to the PBX when it is the proxy; else to the URI's host.
        self.proxy = proxy
        self.extra_headers = extra_headers
        self.local_tag = new_tag()
        # Who may speak in the dialog: the INVITE's peer, the 2xx's (`dialog_match.py`).
        self.peer = DialogPeer(self.local_tag)
        self.remote: NameAddr | None = None  # To of the answer, with the remote tag
        self.remote_target: str | None = None  # the answer's Contact
        self.invite: Request | None = None
        self.cseq = 1
        self.route: list[str] = []
        self._bye_sent = False
        self._transaction: ClientTransaction | None = None
        loop = asyncio.get_running_loop()
        # Set at the first 180/183; None once start() has taken it.
        self._rang: asyncio.Future[None] | None = loop.create_future()
        self._proceeding: asyncio.Future[None] = loop.create_future()  # any 1xx seen
        self._cancelling = False

    def destination(self, uri: str) -> Address:
        if self.proxy is not None:
            return self.proxy
        return _address_of(uri)

    @property
    def call_id(self) -> str:
        assert self.invite is not None
        return self.invite.call_id

    def begin(self) -> None:
        """Opens the media socket and sends the INVITE, all before returning: placing
        hundreds of calls at once is one pass of the loop, not several per call."""
        host = self.ua.transport.local[0]
        self.media = MediaSocket(self, host)
        uri = self.target
        request = self.ua.new_request("INVITE", uri, f"<{uri}>", from_tag=self.local_tag)
        request.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO")
        for name, value in self.extra_headers.items():
            request.headers.add(name, value)
        request.headers.add("Content-Type", "application/sdp")
        request.body = sdp.offer(
            host,
            self.media.port,
            self.reoffers.session,
            proto=self.crypto.offer_proto,
            crypto=self.crypto.offer_lines(),
        )
        self.invite = request
        self.peer.expect_from(self.destination(self.target)[0])
        self.ua.dialogs[request.call_id] = self
        # Whose IP alone may latch our RTP where the SDP names a NATed address.
        self.rtp_source.peer = self.destination(self.target)[0]
        self._transaction = self._send_invite(request)

    def _send_invite(self, request: Request) -> ClientTransaction:
        where = self.destination(self.target)
        return self.ua.start_transaction(request, where, on_provisional=self._provisional)

    async def start(
        self, ring_timeout: float, on_ringing: Callable[[], Coroutine[Any, Any, None]]
    ) -> Response | Ended:
        """Waits for the answer to the INVITE of `begin` (which it calls if need be),
        running `on_ringing` once at the first 180/183; cancels at the ring timeout.

        Returns the 2xx (the call is up, ACK sent) or `Ended` with the final status.
        `on_ringing` runs beside the wait (a slow event sink must not delay the ACK,
        or the phone's retransmitted 200 would go unanswered) and has finished when
        this returns.
        """
        if self._transaction is None:
            self.begin()
        loop = asyncio.get_running_loop()
        # Timer C ends a ringing INVITE without a CANCEL: stay below it.
        deadline = loop.time() + min(ring_timeout, MAX_RING_S)
        answered: set[int] = set()  # a 401 and a 407 once each (proxy and PBX)
        ringing: asyncio.Task[None] | None = None
        try:
            while True:
                tx = self._transaction
                assert tx is not None
                waits: set[asyncio.Future[Any]] = {tx.final}
                if self._rang is not None:
                    waits.add(self._rang)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    self._cancelling = True
                    ended = await self._cancel()
                    if ringing is not None:
                        await ringing
                    return ended
                # The transaction is not a task of ours: at the ring timeout it goes on,
                # to see the 487 (and ACK it) or a 200 that crosses the CANCEL.
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if self._rang is not None and self._rang.done():
                    self._rang = None
                    ringing = asyncio.create_task(on_ringing())
                if not tx.final.done():
                    continue
                failure = tx.final.exception()
                if failure is not None:  # no final answer: Timer B, or the transport's failure
                    self.close()
                    if ringing is not None:
                        await ringing
                    if isinstance(failure, SipTimeout):
                        return Ended(408, f"no answer from the PBX: {failure}")
                    return self._transport_failed(failure)
                response = tx.final.result()
                if response.status in (401, 407) and response.status not in answered:
                    answered.add(response.status)
                    try:
                        request = self.ua.authorize(tx.request, response)
                    except DigestError as exc:
                        log.warning("cannot answer the challenge for %s: %s", self.target, exc)
                    else:
                        self.invite = request
                        self.cseq = request.cseq[0]
                        self._transaction = self._send_invite(request)
                        continue
                break
            try:
                result = await self._settle(response)
            except SipError as exc:  # an answer we cannot follow (a bad Contact, say)
                log.warning("the answer of %s cannot be used: %s", self.target, exc)
                self.close()
                result = Ended(500, f"unusable answer: {exc}")
            if ringing is not None:
                await ringing
            return result
        except BaseException:
            # Stopped while ringing (the quorum, say) or the sink failed: the phone must
            # stop ringing too.
            if ringing is not None and not ringing.done():
                ringing.cancel()
            self._abort_invite()
            raise

    def _abort_invite(self) -> bool:
        """CANCELs the INVITE in the background while it has no final answer; False when
        it has one (or is being cancelled already)."""
        tx = self._transaction
        if tx is None or tx.final.done() or self._cancelling:
            return False
        self._cancelling = True
        self.ua.background(self._cancel())
        return True

    def _provisional(self, response: Response) -> None:
        if not self._proceeding.done():
            self._proceeding.set_result(None)
        if response.status in (180, 183) and self._rang is not None and not self._rang.done():
            self._rang.set_result(None)

    def _transport_failed(self, failure: BaseException) -> Ended:
        """503 for an INVITE the transport failed (RFC 3261 8.1.3.1), with the failure's
        code for the attempt's detail. An INVITE that left on a connection lost since
        may be ringing the member at the PBX, which cannot answer it any more: it gets
        its CANCEL over the next connection (issue 15 point 9 review, point 3)."""
        if not isinstance(failure, TransportFailure):
            return Ended(503, str(failure))
        if failure.sent:
            self.ua.background(self._cancel_unanswerable())
        return Ended(503, str(failure), failure.code)

    async def _cancel_unanswerable(self) -> None:
        try:
            await self.ua.send_request(self._cancel_request(), self.destination(self.target))
        except SipError as exc:
            log.info("CANCEL to %s after the connection was lost: %s", self.target, exc)

    def _cancel_request(self) -> Request:
        """The CANCEL of our INVITE: its Request-URI, Via (same branch), From, To and
        Call-ID, without what belonged to the INVITE alone (RFC 3261 9.1)."""
        invite = self.invite
        assert invite is not None
        cancel = Request("CANCEL", invite.uri, invite.headers.copy())
        # The digest of an authorised INVITE was for INVITE: the CANCEL goes without it.
        for name in (
            "Contact",
            "Content-Type",
            "Allow",
            "Authorization",
            "Proxy-Authorization",
            *self.extra_headers,
        ):
            cancel.headers.remove(name)
        cancel.headers.set("CSeq", f"{invite.cseq[0]} CANCEL")
        return cancel

    async def _cancel(self) -> Ended:
        """CANCEL the ringing INVITE (RFC 3261 9.1); a 200 that crosses it is hung up."""
        tx = self._transaction
        assert tx is not None
        try:
            # RFC 3261 9.1: a CANCEL only once the INVITE drew a provisional answer, so
            # wait for one; without any the INVITE transaction runs out by itself (Timer B).
            if not tx.final.done():
                either: set[asyncio.Future[Any]] = {tx.final, self._proceeding}
                await asyncio.wait(
                    either,
                    timeout=64 * 0.5,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            if self._proceeding.done() and not tx.final.done():
                # Made now: its Via is the INVITE's as it left (`TlsTransport` may have
                # written the connection's address into it on the way).
                cancel = self._cancel_request()
                try:
                    await self.ua.send_request(cancel, self.destination(self.target))
                except SipError as exc:
                    log.info("CANCEL to %s: %s", self.target, exc)
            await asyncio.wait({tx.final}, timeout=64 * 0.5)
            if not tx.final.done() or tx.final.cancelled() or tx.final.exception() is not None:
                return Ended(408, "no answer")
            final = tx.final.result()
            if final.status // 100 == 2:  # answered as we cancelled: take it and hang up
                with contextlib.suppress(SipError):
                    await self._settle(final)
                await self.hang_up()
            return Ended(487, "no answer within the ring timeout")
        finally:
            tx.final.cancel()
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
            answer = sdp.parse(response.body)
            secure = self.crypto.mode != "off"
            self.negotiated = await self.resolved(sdp.negotiate(answer, secure=secure))
            self.crypto.answered(answer.proto, answer.crypto)  # SrtpRequired: no key
        except SdpError as exc:
            log.warning("the answer of %s has no usable media: %s", self.target, exc)
            await self.hang_up()
            return Ended(488, f"no usable media: {exc}", getattr(exc, "code", None))
        self.hold.follow(answer, self.call_id)  # a phone may answer on hold
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
        """BYE once, unless the member hung up first; then the media socket closes. An
        INVITE still without a final answer is cancelled instead (in the background)."""
        if self._abort_invite():
            return
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
        self.close_media(self.invite.call_id if self.invite is not None else self.target)
        if self.invite is not None:
            self.ua.dialogs.pop(self.invite.call_id, None)
