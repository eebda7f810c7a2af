"""The agent takes calls (issue 16): INVITEs outside any dialog, over UDP, TCP and TLS.

Install it on a user agent (`ua.incoming = IncomingCalls(ua, router, ...)`, or
`SipDialer.answer_calls(router)`). For each new INVITE the `router` decides at once,
from what the INVITE says (`IncomingInvite`: the called-number candidates,
`called_number.py`, and the caller): `Refuse` with a status (404 for a number it
does not know, 480 while the agent has no group configuration), or `Accept` with
an async handler that gets the caller's line (`ivr.port.CallerLine`). Without a
router the user agent declines every call (603), as before.

An accepted INVITE gets 100 Trying at once; the call (`incoming_call.py`) then
answers (200 with SDP, repeated until the ACK), and once the ACK is in the handler
runs with the line (`incoming_media.py`). The call ends when the handler returns
(BYE, unless the caller hung up), at MAX_CALL_S, or with the caller's BYE, which
the handler sees as CallerGone at its next step. A CANCEL before the 200 gets the
INVITE 487 and the handler never runs.

Who may call: only a trusted source (finding 1 of the review of issue 16): the PBX the
user agent's account names (its host), the hosts in `trusted_hosts` (every address the
PBX's name resolved to; the TLS connection to it comes from there) and the networks in
`trusted` (RUNDRUF_AGENT_SIP_PBX_ADDRESSES, RUNDRUF_AGENT_SIP_TRIGGER_SOURCES). Anyone
else gets 403, logged at most once per REFUSAL_LOG_S; the intake's rate limit drops a
stranger's flood before it gets here. So the headers that name the caller and the called
number (P-Asserted-Identity, Diversion, History-Info) are only ever read from the PBX.

Bounds: at most `limit` incoming calls at once (MAX_INCOMING, counting those still
ringing or waiting for their ACK); the next gets 486 Busy Here with Retry-After. A call
gives its place back as soon as it has ended: our BYE's transaction, and a refusal's
wait for its ACK, go on without it (review of issue 16, finding 2). At most `unacked`
of them wait for their ACK: the next INVITE drops the oldest silently (a blind spoofer
cannot ACK; second review, finding 2). At most `per_caller` of them from one caller
number that has not passed its check (the handler calls `authenticated()` on its line
after the PIN): the next ends the oldest (finding 3); a withheld number has no such cap.
That stage lasts at most `Accept.pin_stage_s`. A router that raises answers 500.
Nothing of a hostile INVITE raises here: what cannot be read is an unknown number
(`called_number.py`), an INVITE without a usable Contact gets 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.ivr.port import CallerGone, CallerLine
from edge_agent.sip.called_number import CalledNumber, called_candidates, caller_identity
from edge_agent.sip.errors import SipError
from edge_agent.sip.incoming_call import IncomingCall, State
from edge_agent.sip.incoming_media import SipCallerLine, first
from edge_agent.sip.media_host import MediaHostResolver
from edge_agent.sip.message import Request, Response, new_tag, response_to
from edge_agent.sip.pacer import Pacer
from edge_agent.sip.peers import Networks, peer_key, within
from edge_agent.sip.srtp import Mode
from edge_agent.sip.transport import Address
from edge_agent.sip.ua import UserAgent

__all__ = [
    "MAX_CALL_S",
    "MAX_INCOMING",
    "Accept",
    "Handler",
    "IncomingCalls",
    "IncomingInvite",
    "Refuse",
    "Router",
]

log = logging.getLogger(__name__)

MAX_INCOMING = 20  # incoming calls at once; a trigger line needs a few
MAX_PER_CALLER = 3  # of them from one caller number before its PIN
# Of them not yet acknowledged (ringing, or our 200 waiting for its ACK): a blind spoofer
# with the PBX's address makes only such calls (second review of issue 16, finding 2).
MAX_UNACKED = 5
MAX_CALL_S = 900.0  # the longest an incoming call lasts, whatever its handler does
BUSY_RETRY_S = 30
CLOSE_GRACE_S = 2.0  # for the BYEs of the calls under way when the agent stops
REFUSAL_LOG_S = 60.0  # a stranger's refused calls: one warning per minute, with the count

Handler = Callable[[CallerLine], Awaitable[None]]


def _anywhere(host: str) -> bool:
    return True


@dataclass(frozen=True)
class IncomingInvite:
    """What the router decides by: whom the INVITE calls and who calls."""

    call_id: str
    # The called numbers found (RUNDRUF_AGENT_SIP_CALLED_NUMBER), most original first;
    # () when there is none that can be read.
    called: tuple[str, ...]
    caller_number: str  # "" when anonymous
    caller_name: str | None
    source: Address
    transport: str  # "UDP", "TCP", "TLS"

    @property
    def number(self) -> str:
        """The first candidate, "" when none."""
        return self.called[0] if self.called else ""


@dataclass(frozen=True)
class Refuse:
    """The INVITE is answered `status` (4xx-6xx) and nothing else happens."""

    status: int
    reason: str
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 699:
            raise ValueError(f"a refusal is 4xx, 5xx or 6xx, not {self.status}")

    @classmethod
    def unknown_number(cls) -> Refuse:
        return cls(404, "Not Found")

    @classmethod
    def not_configured(cls, retry_after: int = 60) -> Refuse:
        return cls(480, "Temporarily Unavailable", retry_after)


@dataclass(frozen=True)
class Accept:
    """The call is answered and `handler` runs with its line once it is up. `ring_s`:
    180 Ringing for that long before the 200 (0: answered at once)."""

    handler: Handler
    ring_s: float = 0.0
    # The longest the call may last before the handler calls `line.authenticated()`
    # (the PIN stage: 3 tries of prompt + digit timeout); None: no such limit.
    pin_stage_s: float | None = None


class Router(Protocol):
    def route(self, invite: IncomingInvite) -> Refuse | Accept:
        """Decides at once (no waiting: the INVITE's 100 goes out after it)."""
        ...


@dataclass
class IncomingCalls:
    """The user agent's hook for INVITEs outside any dialog (`UserAgent.incoming`)."""

    ua: UserAgent
    router: Router
    called_number: CalledNumber = "auto"
    number_prefixes: tuple[str, ...] = ()  # RUNDRUF_AGENT_SIP_NUMBER_PREFIXES
    srtp: Mode = "off"
    pacer: Pacer | None = None  # the dialer's; None: one of our own
    proxy: Address | None = None  # the outbound proxy our BYEs go to (the PBX)
    limit: int = MAX_INCOMING
    per_caller: int = MAX_PER_CALLER
    unacked: int = MAX_UNACKED
    max_call_s: float = MAX_CALL_S
    resolver: MediaHostResolver | None = None
    # Who may call besides the account's server host (see the module text).
    trusted_hosts: frozenset[str] = frozenset()
    trusted: Networks = ()
    calls: dict[str, IncomingCall] = field(default_factory=dict)
    refused_strangers: int = 0  # INVITEs from untrusted sources, in all
    _unlogged: int = 0
    _logged_at: float = float("-inf")
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _own_pacer: bool = False

    def invite(self, request: Request, source: Address) -> Response:
        if request.to_tag is not None:  # names a dialog we do not have (RFC 3261 12.2.2)
            return response_to(request, 481, "Call/Transaction Does Not Exist")
        if not self.trusts(source[0]):
            self._refused_stranger(source)
            return response_to(request, 403, "Forbidden", new_tag())
        offer = self._describe(request, source)
        try:
            decision = self.router.route(offer)
        except Exception:
            log.exception("the router failed on the incoming call %s", request.call_id)
            return response_to(request, 500, "Server Internal Error", new_tag())
        if isinstance(decision, Refuse):
            refused = response_to(request, decision.status, decision.reason, new_tag())
            if decision.retry_after is not None:
                refused.headers.add("Retry-After", str(decision.retry_after))
            return refused
        # Only a call that will be taken makes room (an INVITE for an unknown number
        # ends nobody's call).
        self._end_oldest_of(offer.caller_number)
        self._drop_oldest_unacked()
        if len(self.calls) >= self.limit:
            log.warning("incoming call from %s refused: %d calls run", source[0], len(self.calls))
            busy = response_to(request, 486, "Busy Here", new_tag())
            busy.headers.add("Retry-After", str(BUSY_RETRY_S))
            return busy
        try:
            call = IncomingCall(
                self.ua,
                request,
                source,
                srtp=self.srtp,
                proxy=self.proxy,
                resolver=self.resolver,
                # The PBX's own SDP may name a phone (direct media) that sends no RTP
                # before it hears us: trusted as it is (second review, finding 4).
                media_trusted=_anywhere if self.is_pbx(source[0]) else self.trusts,
            )
        except SipError as exc:
            log.info("incoming call %s refused: %s", request.call_id, exc)
            return response_to(request, 400, f"Bad Request ({exc})"[:80], new_tag())
        try:
            call.open_media()
        except OSError as exc:
            log.warning("incoming call %s: no RTP socket: %s", request.call_id, exc)
            return response_to(request, 503, "Service Unavailable", new_tag())
        call.caller_number = offer.caller_number
        self.calls[call.call_id] = call
        self.ua.dialogs[call.call_id] = call
        trying = response_to(request, 100, "Trying")
        self.ua.server_invites.answered(request, trying, source)  # for its CANCEL
        task = asyncio.create_task(self._run(call, decision, offer), name=f"in-{call.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return trying

    def _end_oldest_of(self, number: str) -> None:
        """With `per_caller` calls of `number` before their PIN, the oldest of them ends
        (BYE) and the new one is taken: refusing the newest let three calls with a forged
        or withheld number lock the real caller out (second review, finding 3). A withheld
        number ("") is nobody's: no cap; the places and the PIN stage's limit bound those."""
        if not number:
            return
        waiting = [
            c
            for c in self.calls.values()
            if c.caller_number == number and not c.authenticated.is_set()
        ]
        if len(waiting) < self.per_caller:
            return
        oldest = waiting[0]  # dicts keep their order of arrival
        log.warning(
            "incoming call %s ended: %d calls of one caller before the PIN",
            oldest.call_id,
            len(waiting),
        )
        self.calls.pop(oldest.call_id, None)
        self.ua.background(self._hang_up(oldest))

    def _drop_oldest_unacked(self) -> None:
        """With `unacked` calls waiting for their ACK, the oldest is dropped silently (no
        200 again, no BYE: `IncomingCall.drop`) so the new INVITE is not refused: forged
        INVITEs that are never acknowledged cannot hold the places (finding 2)."""
        waiting = [c for c in self.calls.values() if c.state in (State.RINGING, State.ANSWERED)]
        if len(waiting) < self.unacked:
            return
        oldest = waiting[0]  # dicts keep their order of arrival
        log.warning(
            "incoming call %s dropped: %d calls wait for their ACK", oldest.call_id, len(waiting)
        )
        self.calls.pop(oldest.call_id, None)
        oldest.drop()

    def trusts(self, host: str) -> bool:
        """Whether a call from `host` is the PBX's (or a source configured as trusted)."""
        if self.is_pbx(host):
            return True
        return bool(self.trusted) and within(host, self.trusted)

    def is_pbx(self, host: str) -> bool:
        """Whether `host` is the account's server or one of its addresses (not merely in a
        trusted network: the SDP of such a source is not taken at its word)."""
        key = peer_key(host)
        return key == peer_key(self.ua.account.server[0]) or key in self.trusted_hosts

    def _refused_stranger(self, source: Address) -> None:
        self.refused_strangers += 1
        self._unlogged += 1
        now = asyncio.get_running_loop().time()
        if now - self._logged_at >= REFUSAL_LOG_S:
            log.warning(
                "incoming call from %s refused (403): not the PBX; %d such in the last %g s "
                "(RUNDRUF_AGENT_SIP_TRIGGER_SOURCES names other trusted sources)",
                source[0],
                self._unlogged,
                REFUSAL_LOG_S,
            )
            self._logged_at = now
            self._unlogged = 0

    def _describe(self, request: Request, source: Address) -> IncomingInvite:
        try:
            called = called_candidates(request, self.called_number, self.number_prefixes)
            number, name = caller_identity(request)
        except Exception:  # never a traceback for what a stranger sent
            log.exception("incoming call %s: the numbers cannot be read", request.call_id)
            called, number, name = (), "", None
        return IncomingInvite(request.call_id, called, number, name, source, self.ua.transport.name)

    def cancel(self, request: Request, source: Address) -> Response | None:
        call = self.calls.get(request.call_id)
        if call is None or request.to_tag is not None:
            return None
        return call.cancel(request, source)

    async def _run(self, call: IncomingCall, accept: Accept, offer: IncomingInvite) -> None:
        try:
            try:
                answered = await call.answer(accept.ring_s)
            except Exception:  # a bug must end this call, not leave it ringing
                log.exception("incoming call %s could not be answered", call.call_id)
                answered = False
            if not answered:
                return
            await first(call.acked.wait(), call.gone.wait())
            if call.state is not State.CONFIRMED:
                return
            line = SipCallerLine(call, self._pacer(), offer.caller_number, offer.caller_name)
            try:
                async with asyncio.timeout(self.max_call_s):
                    await self._handle(call, accept, line)
            except CallerGone:
                pass
            except TimeoutError:
                log.warning("incoming call %s ended after %g s", call.call_id, self.max_call_s)
            except Exception:
                log.exception("the handler of incoming call %s failed", call.call_id)
        finally:
            # The place is free now; the BYE's transaction (up to 64 x T1 when nobody
            # answers it) goes on in the background.
            self.calls.pop(call.call_id, None)
            self.ua.background(self._hang_up(call))

    @staticmethod
    async def _hang_up(call: IncomingCall) -> None:
        with contextlib.suppress(Exception):
            await call.hang_up()

    async def _handle(self, call: IncomingCall, accept: Accept, line: SipCallerLine) -> None:
        """The handler, ended (as if the caller had gone) when it has not called
        `authenticated()` within `accept.pin_stage_s`."""
        if accept.pin_stage_s is None:
            await accept.handler(line)
            return
        handler = asyncio.ensure_future(accept.handler(line))
        timed_out = False
        loop = asyncio.get_running_loop()
        counted = 0.0  # of line.pin_stage_extended, already added to the timer
        timer: asyncio.TimerHandle

        def stage_over() -> None:
            nonlocal timed_out, timer, counted
            extra = line.pin_stage_extended - counted
            if extra > 0:  # the IVR's own waits do not count (review 2 of issue 16, finding 1)
                counted += extra
                timer = loop.call_later(extra, stage_over)
                return
            if not call.authenticated.is_set() and not handler.done():
                timed_out = True
                handler.cancel()

        timer = loop.call_later(accept.pin_stage_s, stage_over)
        try:
            await handler
        except asyncio.CancelledError:
            if not timed_out:
                raise
            log.warning(
                "incoming call %s ended: no PIN within %g s", call.call_id, accept.pin_stage_s
            )
        finally:
            timer.cancel()
            if not handler.done():
                handler.cancel()

    def _pacer(self) -> Pacer:
        if self.pacer is None:
            self.pacer = Pacer()
            self._own_pacer = True
        if self._own_pacer:
            self.pacer.start()
        return self.pacer

    async def close(self) -> None:
        """Ends every incoming call (BYE) and stops taking new ones."""
        if self.ua.incoming is self:
            self.ua.incoming = None
        for task in list(self._tasks):
            task.cancel()
        byes = [asyncio.ensure_future(call.hang_up()) for call in self.calls.values()]
        if byes:  # all at once, within CLOSE_GRACE_S together
            _, late = await asyncio.wait(byes, timeout=CLOSE_GRACE_S)
            for bye in late:
                bye.cancel()
        for call in list(self.calls.values()):
            call.close()
            call.finished.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_pacer and self.pacer is not None:
            self.pacer.close()
