"""The user agent: client transactions, answers to incoming requests, registration.

Calls (`call.py`) build on it. Timers follow RFC 3261 17.1: on UDP a request is
retransmitted from T1 = 0.5 s, doubling (non-INVITE: capped at T2 = 4 s), until
a response comes or 64 x T1 passes. Requests that arrive twice get the same answer
(`answer_cache.py`); a request of a dialog is taken only from the dialog's peer
(`dialog_match.py`); a final answer to a re-INVITE is repeated until its ACK
(`invite_server.py`). INVITEs outside any dialog go to `incoming` (`incoming.py`: the
agent takes calls, issue 16), or are declined (603) without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.sip import answer_cache, dialog_match, digest, grant, nat, uas_checks
from edge_agent.sip.addresses import format_host, hostport
from edge_agent.sip.answer_cache import AnswerCache, server_key
from edge_agent.sip.dialog_match import Dialog
from edge_agent.sip.errors import DigestError, SipError
from edge_agent.sip.invite_answers import (
    HangUp,
    InviteAnswers,
    Resend,
    SentInvite,
    ack_and_bye,
    ack_for_failure,
)
from edge_agent.sip.invite_server import InviteServer
from edge_agent.sip.message import (
    Headers,
    Request,
    Response,
    new_branch,
    new_call_id,
    new_tag,
    response_to,
)
from edge_agent.sip.transport import Address, Transport

log = logging.getLogger(__name__)

T1, T2 = 0.5, 4.0
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY"
USER_AGENT = "Rundruf-Agent"
ANSWER_MEMORY_S = 32.0  # how long an answer is kept for a retransmitted request
TIMER_C = 180.0  # RFC 3261 16.6: the longest an INVITE may ring


class SipTimeout(SipError):
    """Raised when a request got no final response within 64 x T1."""


class RegistrationRefused(SipError):
    """Raised when the registrar answers a REGISTER with a final non-2xx response.

    `challenged`: the refusal came to the REGISTER that carried our credentials.
    """

    def __init__(self, status: int, reason: str, *, challenged: bool) -> None:
        super().__init__(f"REGISTER refused: {status} {reason}")
        self.status = status
        self.reason = reason
        self.challenged = challenged


class RegistrationNotGranted(SipError):
    """Raised when the registrar accepts a REGISTER but grants 0 seconds for it."""

    def __init__(self, requested: int) -> None:
        super().__init__(f"REGISTER accepted for 0 s (asked for {requested} s)")
        self.requested = requested


class IncomingHook(Protocol):
    """Who takes INVITEs outside any dialog (`incoming.IncomingCalls`); without one the
    user agent declines them (603)."""

    def invite(self, request: Request, source: Address) -> Response:
        """The answer to a new INVITE now: 100 Trying (the call goes on) or a refusal."""
        ...

    def cancel(self, request: Request, source: Address) -> Response | None:
        """The answer to a CANCEL of one of its INVITEs; None when it is none of its."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Account:
    """Where and as whom the agent speaks SIP (the PBX user "Rundruf")."""

    user: str
    password: str
    domain: str  # the PBX's SIP domain (host)
    server: Address  # where requests go: the PBX (outbound proxy)
    display_name: str = "Rundruf"
    register: bool = True
    expires: int = 300


class ClientTransaction:
    """One request's client transaction (RFC 3261 17.1): timers, not a task.

    Sending starts at once; retransmissions and the give-up are loop timers, so a
    call placing its INVITE costs no extra task and no extra pass of the loop.
    `final` resolves with the final response, or fails with SipTimeout; cancelling
    it ends the transaction.
    """

    __slots__ = (
        "_timer",
        "deadline",
        "destination",
        "ended",
        "final",
        "on_provisional",
        "provisional",
        "request",
        "resent",
        "started",
    )

    def __init__(
        self,
        request: Request,
        destination: Address,
        final: asyncio.Future[Response],
        on_provisional: Callable[[Response], None] | None,
        started: float,
    ) -> None:
        self.request = request
        self.destination = destination
        self.final = final
        self.on_provisional = on_provisional
        self.provisional = False
        self.started = started
        self.deadline = started + 64 * T1
        self.ended = False
        self.resent = False  # sent again on a new connection after its own closed
        self._timer: asyncio.TimerHandle | None = None


@dataclass
class UserAgent:
    account: Account
    transport: Transport
    dialogs: dict[str, Dialog] = field(default_factory=dict)  # by Call-ID
    # By branch and method: a CANCEL shares its INVITE's branch (RFC 3261 9.1).
    _pending: dict[tuple[str, str], ClientTransaction] = field(default_factory=dict)
    # Answers for retransmitted requests: of our dialogs, and of anything else.
    _answers: AnswerCache = field(default_factory=answer_cache.for_dialogs)
    _other_answers: AnswerCache = field(default_factory=answer_cache.for_others)
    # The INVITEs sent lately: what a 2xx outside their transaction gets (issue 15).
    invites: InviteAnswers = field(default_factory=InviteAnswers)
    _failure_acks: dict[str, tuple[float, Request, Address]] = field(default_factory=dict)
    _background: set[asyncio.Task[Any]] = field(default_factory=set)
    _register_call_id: str | None = None
    _register_cseq: int = 1
    # Our address as the registrar sees it, where that is not ours (NAT, RFC 3581): the
    # Contact names it (`nat.py`). Learned from its answers to REGISTER on UDP only.
    public: Address | None = None
    _register_contact: str = ""  # the Contact of the REGISTER on its way
    # The re-INVITEs of our dialogs: final answers repeated until their ACK, CANCELs.
    server_invites: InviteServer = field(init=False)
    # Who takes incoming calls (issue 16); None: they are declined.
    incoming: IncomingHook | None = None

    def __post_init__(self) -> None:
        self.server_invites = InviteServer(self._reply, lambda: self.transport.name != "UDP")
        # A connection that cannot be made, or closes, ends the wait for its answers.
        self.transport.watch(self.connection_lost, self.connection_failed)

    # ---------------------------------------------------------------- addresses

    @property
    def contact(self) -> str:
        where = hostport(*(self.public or self.transport.local))
        return f"<sip:{self.account.user}@{where};transport={self.transport.name.lower()}>"

    def via(self, branch: str) -> str:
        where = hostport(*self.transport.local)
        return f"SIP/2.0/{self.transport.name} {where};branch={branch};rport"

    def from_header(self, tag: str) -> str:
        a = self.account
        return f'"{a.display_name}" <sip:{a.user}@{format_host(a.domain)}>;tag={tag}'

    def new_request(
        self,
        method: str,
        uri: str,
        to: str,
        *,
        call_id: str | None = None,
        from_tag: str | None = None,
        cseq: int = 1,
    ) -> Request:
        headers = Headers()
        branch = new_branch()
        headers.add("Via", self.via(branch))
        headers.add("Max-Forwards", "70")
        headers.add("From", self.from_header(from_tag or new_tag()))
        headers.add("To", to)
        headers.add("Call-ID", call_id or new_call_id(self.transport.local[0]))
        headers.add("CSeq", f"{cseq} {method}")
        headers.add("Contact", self.contact)
        headers.add("User-Agent", USER_AGENT)
        request = Request(method, uri, headers)
        request.remember_branch(branch)
        return request

    # ---------------------------------------------------------------- client transactions

    async def send_request(
        self,
        request: Request,
        destination: Address | None = None,
        on_provisional: Callable[[Response], None] | None = None,
    ) -> Response:
        """Sends and retransmits until the final response; raises SipTimeout after 64 x T1."""
        return await self.start_transaction(request, destination, on_provisional).final

    def start_transaction(
        self,
        request: Request,
        destination: Address | None = None,
        on_provisional: Callable[[Response], None] | None = None,
    ) -> ClientTransaction:
        """Sends `request` now and keeps retransmitting it by timer until `final` resolves."""
        destination = destination or self.account.server
        loop = asyncio.get_running_loop()
        key = (request.branch, request.method)
        tx = ClientTransaction(
            request, destination, loop.create_future(), on_provisional, loop.time()
        )
        # Sent first: a request that cannot be written raises before anything is kept.
        self.transport.send(request, destination)
        self._pending[key] = tx
        if request.method == "INVITE":
            self.invites.started(request, destination)
        tx.final.add_done_callback(lambda _: self._end_transaction(key, tx))
        tx._timer = loop.call_at(tx.started + T1, self._retransmit, tx, T1)
        return tx

    def _retransmit(self, tx: ClientTransaction, interval: float) -> None:
        if tx.final.done():
            return
        invite = tx.request.method == "INVITE"
        loop = asyncio.get_running_loop()
        now = loop.time()
        if invite and tx.provisional:
            # After a provisional the INVITE waits for the callee; the ring timeout is the
            # caller's business (it cancels), Timer C the backstop.
            tx.deadline = max(tx.deadline, tx.started + TIMER_C)
        if now >= tx.deadline - 1e-6:
            tx.final.set_exception(
                SipTimeout(f"no final answer to {tx.request.method} within {64 * T1:g} s")
            )
            return
        if self.transport.name == "UDP" and not (invite and tx.provisional):
            self.transport.send(tx.request, tx.destination)
        interval = interval * 2 if invite else min(interval * 2, T2)
        tx._timer = loop.call_at(min(now + interval, tx.deadline), self._retransmit, tx, interval)

    def _end_transaction(self, key: tuple[str, str], tx: ClientTransaction) -> None:
        """Once, when `final` resolves: at once for a final answer (a fork's second 2xx
        may come in the same batch, before the future's callbacks run), else by callback."""
        if tx.ended:
            return
        tx.ended = True
        if tx._timer is not None:
            tx._timer.cancel()
        if self._pending.get(key) is tx:
            del self._pending[key]
        final = None
        if not tx.final.cancelled() and tx.final.exception() is None:
            final = tx.final.result()  # (a timeout nobody awaits is retrieved: not logged)
        if tx.request.method == "INVITE":
            self.invites.ended(tx.request, final)

    def connection_failed(self, destination: Address, failure: Exception) -> None:
        """The transport cannot reach `destination` (a TLS certificate refused, say): the
        transactions waiting on it fail with `failure` now, not after 64 x T1."""
        for tx in list(self._pending.values()):
            if tx.destination == destination and not tx.final.done():
                tx.final.set_exception(failure)

    def connection_lost(self, destination: Address, exc: Exception | None) -> None:
        """Our connection to `destination` closed (the PBX rebooted, say, and reset it):
        a request on it without any answer yet is sent once more, on a new connection,
        at once (the PBX takes a second copy as a retransmission); one whose second
        connection closes too fails now. One with a provisional answer waits: its
        final answer may come over a connection the PBX opens (RFC 3261 18.2.2). Over
        TLS none can (`Transport.unanswerable`): an INVITE on it ends with the failure,
        and its call CANCELs it over the next connection."""
        unanswerable = self.transport.unanswerable(destination, exc)
        for tx in list(self._pending.values()):
            if tx.destination != destination or tx.final.done():
                continue
            if unanswerable is not None and tx.request.method == "INVITE":
                tx.final.set_exception(unanswerable)
                continue
            if tx.provisional:
                continue
            if tx.resent:
                why = f"the connection to {destination[0]}:{destination[1]} closed"
                tx.final.set_exception(ConnectionError(f"{why}: {exc!r}" if exc else why))
                continue
            tx.resent = True
            try:
                self.transport.send(tx.request, destination)
            except OSError as error:
                tx.final.set_exception(error)

    def _on_response(self, response: Response, source: Address) -> None:
        key = (response.branch, response.cseq[1])
        pending = self._pending.get(key)
        if pending is None or pending.ended:
            self._on_stray_response(response, source)
            return
        if response.call_id != pending.request.call_id or (
            response.status // 100 == 2 and response.from_tag != pending.request.from_tag
        ):  # our branch, but not our call: a forgery (RFC 3261 13.2.2.4 matches all three)
            self.invites.drop("branch of another call", response, source)
            return
        # Where the registrar saw us (NAT): our Contact from now on. Over TCP the
        # connection is the way back, and its port is not the one we listen on.
        registrar = pending.request.method == "REGISTER" and source == pending.destination
        if registrar and self.transport.name == "UDP":
            self.public = nat.learned(response, self.transport.local, self.public, source)
        if response.status < 200:
            pending.provisional = True
            if pending.on_provisional is not None:
                pending.on_provisional(response)
            return
        if pending.request.method == "INVITE" and response.status >= 300:
            # Non-2xx to INVITE: the transaction acknowledges it (RFC 3261 17.1.1.3), and
            # again for each retransmission of it (Timer D).
            ack = ack_for_failure(pending.request, response)
            self.transport.send(ack, pending.destination)
            self._failure_acks[response.branch] = (time.monotonic(), ack, pending.destination)
        if not pending.final.done():
            pending.final.set_result(response)
            made = pending.request.method in ("INVITE", "SUBSCRIBE")
            if made and response.status // 100 == 2:  # the dialog's peer: its tag, its hosts
                dialog = self.dialogs.get(response.call_id)
                if dialog is not None:
                    dialog.peer.answered(response, source)
        self._end_transaction(key, pending)

    @property
    def stray_answers(self) -> dict[str, int]:
        """2xx answers dropped since the start, by reason (matching no INVITE we sent)."""
        return dict(self.invites.dropped)

    def _on_stray_response(self, response: Response, source: Address) -> None:
        if response.cseq[1] != "INVITE":
            return
        if response.status // 100 == 2:
            verdict = self.invites.judge(response, source, in_call=response.call_id in self.dialogs)
            if isinstance(verdict, Resend):  # our ACK was lost: the same one again
                self.transport.send(verdict.ack, verdict.destination)
            elif isinstance(verdict, HangUp):  # a fork, or a call we gave up
                self._hang_up_other_dialog(verdict.invite, verdict.to_tag, response)
        elif response.status >= 300:
            failure = self._failure_acks.get(response.branch)
            if failure is not None:
                self.transport.send(failure[1], failure[2])

    def _hang_up_other_dialog(self, invite: SentInvite, to_tag: str, response: Response) -> None:
        """ACK and BYE for a dialog of our INVITE that no call holds (RFC 3261 13.2.2.4),
        both to where the INVITE went, with the INVITE's Request-URI and Route: never to
        the answer's source, and nothing of what the answer names (Contact, Record-Route,
        which a forger chooses) steers them (docs/decisions/sip-stray-answers.md). The
        ACK is kept for the answer's retransmissions."""
        ack, bye = ack_and_bye(invite, response, self.new_request)
        self.invites.hung_up(invite, to_tag, ack)  # before sending: one BYE per dialog
        self.transport.send(ack, invite.destination)
        self.background(self._send_quietly(bye, invite.destination))

    async def _send_quietly(self, request: Request, destination: Address) -> None:
        with contextlib.suppress(SipError):
            await self.send_request(request, destination)

    def remember_ack(self, call_id: str, ack: Request, destination: Address) -> None:
        """The call's ACK for its answer: sent again when that answer comes again."""
        self.invites.acknowledged(call_id, ack, destination)

    # ---------------------------------------------------------------- server side

    def receive(self, message: Request | Response, source: Address, _: Transport) -> None:
        """The transport's receiver."""
        if isinstance(message, Response):
            self._on_response(message, source)
            return
        self._forget_old()
        key = server_key(message)
        remembered = self._answers.get(key)
        if remembered is None:
            remembered = self._other_answers.get(key)
        if remembered is not None:  # a retransmission: the same answer again
            self._reply(remembered, source)
            return
        found = dialog_match.match(self.dialogs.get(message.call_id), message, source)
        answer = self._answer(message, source, found)
        if answer is None:
            return
        if found.dialog is None:  # anyone's: a small memory of its own
            self._other_answers.put(key, answer, source[0])
        else:
            self._answers.put(key, answer, source[0])
            if message.method == "INVITE":  # final answers until the ACK, CANCEL
                self.server_invites.answered(message, answer, source)
        self._reply(answer, source)

    def reply(self, answer: Response, source: Address) -> None:
        """Sends `answer` to `source` as `_reply` does (a provisional answer of a call)."""
        self._reply(answer, source)

    def _reply(self, answer: Response, source: Address) -> None:
        """To where the request came from (RFC 3581 4: behind a NAT the Via's address
        is not reachable), which its top Via is told (`received`, `rport`): a copy
        stamped for this `source`, the remembered answer stays unstamped."""
        self.transport.send(nat.stamped(answer, source), source)

    def answer_later(self, request: Request, answer: Response, source: Address) -> None:
        """Sends the final `answer` a dialog could not give at once (a re-INVITE whose
        SDP names a host, after the lookup); a retransmission of `request` gets it too,
        and it is sent again until its ACK. Not sent when the INVITE has had its final
        answer already (a CANCEL's 487)."""
        if self.server_invites.finished(request):
            return
        self._answers.put(server_key(request), answer, source[0])
        self.server_invites.answered(request, answer, source)
        self._reply(answer, source)

    def answered_finally(self, request: Request) -> bool:
        """Whether the re-INVITE `request` has had its final answer (a CANCEL's 487)."""
        return self.server_invites.finished(request)

    def _answer(
        self, request: Request, source: Address, found: dialog_match.Match
    ) -> Response | None:
        dialog = found.dialog
        if request.method == "ACK":
            if dialog is not None:
                self.server_invites.acknowledged(request)
                dialog.handle(request, source)
            return None
        if request.method == "CANCEL" and self.incoming is not None:
            # Of an incoming call's INVITE: its To has no tag yet, so no dialog names it.
            cancelled = self.incoming.cancel(request, source)
            if cancelled is not None:
                return cancelled
        if found.refusal is not None:  # our Call-ID, not its sender's dialog (12.2.2)
            return found.refusal
        refused = uas_checks.check(request, allow=ALLOW, in_dialog=dialog is not None)
        if refused is not None:  # unknown method, URI scheme, extension or body type
            return refused
        if dialog is not None:
            if request.method == "CANCEL":  # of a re-INVITE (RFC 3261 9.2)
                return self._cancel(request)
            return dialog.handle(request, source)
        if request.method == "OPTIONS":
            response = response_to(request, 200, "OK", new_tag())
            response.headers.add("Allow", ALLOW)
            response.headers.add("Accept", "application/sdp")
            return response
        if request.method == "INVITE":
            if self.incoming is not None:  # the agent takes calls (issue 16)
                return self.incoming.invite(request, source)
            # Nobody takes calls: an incoming call is refused plainly.
            return response_to(request, 603, "Decline", new_tag())
        if request.method in {"BYE", "CANCEL", "INFO", "NOTIFY"}:
            return response_to(request, 481, "Call/Transaction Does Not Exist")
        response = response_to(request, 405, "Method Not Allowed", new_tag())  # 8.2.6.2
        response.headers.add("Allow", ALLOW)
        return response

    def _cancel(self, cancel: Request) -> Response:
        """200 to a CANCEL of a re-INVITE of ours, which gets 487 if still unanswered."""
        ok, ended = self.server_invites.cancel(cancel)
        if ended is not None:
            self.answer_later(*ended)
        return ok

    def _forget_old(self) -> None:
        self._answers.forget_old()
        self._other_answers.forget_old()
        # In time order: drop from the front while entries are old.
        cutoff = time.monotonic() - ANSWER_MEMORY_S
        while self._failure_acks:
            branch = next(iter(self._failure_acks))
            if self._failure_acks[branch][0] >= cutoff:
                break
            del self._failure_acks[branch]

    def background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Runs `work` as a task the user agent keeps until done (and `close` waits for)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self, grace_s: float = 5.0) -> None:
        """Ends the incoming calls, waits for the CANCELs and BYEs still under way, then
        closes the transport."""
        if self.incoming is not None:
            await self.incoming.close()
        if self._background:
            await asyncio.wait(set(self._background), timeout=grace_s)
        for task in list(self._background):
            task.cancel()
        self.server_invites.close()
        self.transport.close()

    # ---------------------------------------------------------------- authentication

    def authorize(self, request: Request, challenge_response: Response) -> Request:
        """The request again with credentials for the challenge, a new branch and CSeq + 1.

        Raises DigestError when the challenge cannot be answered.
        """
        header = "WWW-Authenticate" if challenge_response.status == 401 else "Proxy-Authenticate"
        answer = "Authorization" if challenge_response.status == 401 else "Proxy-Authorization"
        values = challenge_response.headers.get_all(header)
        if not values:
            raise DigestError(f"{challenge_response.status} without {header}")
        challenges = [digest.parse_challenge(v) for v in values]
        # RFC 8760: the first algorithm we support, preferring the strongest.
        order = {"SHA-256": 0, "SHA-256-sess": 1, "MD5": 2, "MD5-sess": 3}
        challenges.sort(key=lambda c: order.get(c.algorithm, 9))
        headers = request.headers.copy()
        headers.set("Via", self.via(new_branch()))  # in place: Via stays the first line
        cseq, method = request.cseq
        headers.set("CSeq", f"{cseq + 1} {method}")
        headers.set(
            answer,
            digest.authorization(
                challenges[0],
                method=method,
                uri=request.uri,
                username=self.account.user,
                password=self.account.password,
                body=request.body,
            ),
        )
        return Request(request.method, request.uri, headers, request.body)

    # ---------------------------------------------------------------- registration

    async def register_once(self, expires: int | None = None) -> int:
        """Registers (or with expires=0 unregisters); returns the granted expiry in seconds.

        Every registration of this user agent shares one Call-ID with the CSeq counting
        up (RFC 3261 10.2.4), so a registrar sees refreshes, not new registrations.
        Raises RegistrationRefused when the registrar says no, RegistrationNotGranted when
        it says yes for 0 seconds, SipTimeout when it does not answer, DigestError when its
        challenge cannot be answered and OSError when the request cannot be sent.
        """
        expires = self.account.expires if expires is None else expires
        response, challenged = await self._register(expires)
        minimum = grant.delta_seconds(response.headers.get("Min-Expires"))
        if response.status == 423 and minimum is not None and minimum > expires > 0:
            # Interval Too Brief: ask again for the registrar's minimum (RFC 3261 10.2.8).
            expires = minimum
            response, challenged = await self._register(expires)
        if response.status // 100 == 2 and expires > 0 and self._register_contact != self.contact:
            # The registrar sees us elsewhere (NAT): register the address it can reach, at
            # once; the binding of the old one lapses at its expiry.
            response, challenged = await self._register(expires)
        if response.status // 100 != 2:
            raise RegistrationRefused(response.status, response.reason, challenged=challenged)
        granted = grant.granted_expiry(response, self.contact, expires)
        if granted == 0 and expires > 0:
            raise RegistrationNotGranted(expires)
        return granted

    async def _register(self, expires: int) -> tuple[Response, bool]:
        """One REGISTER, answered with credentials when challenged."""
        a = self.account
        if self._register_call_id is None:
            self._register_call_id = new_call_id(self.transport.local[0])
        self._register_contact = self.contact
        request = self.new_request(
            "REGISTER",
            f"sip:{format_host(a.domain)}",
            f"<sip:{a.user}@{format_host(a.domain)}>",
            call_id=self._register_call_id,
            cseq=self._register_cseq,
        )
        request.headers.add("Expires", str(expires))
        self._register_cseq += 1
        request, response, challenged = await self.send_authorized(request)
        # The Contact as it left: a REGISTER that waited for a new TLS connection names it.
        self._register_contact = request.headers.get("Contact") or self._register_contact
        self._register_cseq = max(self._register_cseq, request.cseq[0] + 1)
        return response, challenged

    async def send_authorized(
        self, request: Request, destination: Address | None = None
    ) -> tuple[Request, Response, bool]:
        """Sends `request`, answering a 401 and a 407 once each (an outbound proxy and the
        registrar may each challenge, RFC 3261 22.3); returns the last request sent, the
        final response and whether credentials were sent. A second challenge of the same
        kind means the credentials were refused: it is returned as the response."""
        response = await self.send_request(request, destination)
        answered: set[int] = set()
        while response.status in (401, 407) and response.status not in answered:
            answered.add(response.status)
            request = self.authorize(request, response)
            response = await self.send_request(request, destination)
        return request, response, bool(answered)
