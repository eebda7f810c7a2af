"""2xx answers to INVITEs that come outside their client transaction: what each one gets.

A 2xx ends the INVITE client transaction (RFC 3261 17.1.1.2); what comes after it is
matched here to an INVITE we sent by Call-ID, From tag and CSeq (number and method,
13.2.2.4), remembered for 64 x T1 after the transaction ended, when the answering
side has stopped retransmitting (13.3.1.4, RFC 6026 Timer M):

- a 2xx of the dialog the call acknowledged: the same ACK again (its ACK was lost),
  at most `MAX_ACK_RESENDS` times per dialog; a phone retransmits about ten times;
- a 2xx of another dialog (a fork, or an INVITE we gave up or cancelled): one ACK and
  one BYE, at most `MAX_DIALOGS` dialogs per INVITE; its retransmissions get the ACK.
  Both carry the INVITE's Request-URI and Route, not what the 2xx names;
- while the call is still taking its answer: nothing (its ACK is on the way);
- anything else is dropped and counted (`dropped`), logged at most every `LOG_EVERY_S`.

What is sent goes where the INVITE (or the call's ACK) went, never to a packet's
source: a forger cannot aim the agent at anybody. Sends are also limited per source
(`SEND_RATE` a second) as a safeguard. Before this, 3,000 forged 200 OKs made the
agent send 1,987 ACKs and 29,553 BYEs (issue 15).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.sip.errors import SipError
from edge_agent.sip.message import Headers, Request, Response

log = logging.getLogger(__name__)

Address = tuple[str, int]

MEMORY_S = 32.0  # 64 x T1
MAX_ACK_RESENDS = 16
MAX_DIALOGS = 8  # other dialogs (forks, late answers) hung up per INVITE
LOG_EVERY_S = 10.0
SEND_RATE = 200.0  # ACK resends and hang-ups a second per source, sustained
SEND_BURST = 1000.0  # an alarm's worth of answers retransmitted at once
MAX_SOURCES = 1024  # sources whose send budget is kept


@dataclass
class SentInvite:
    """An INVITE we sent, as far as answers outside its transaction need it."""

    call_id: str
    from_tag: str
    from_header: str
    uri: str
    destination: Address
    routes: tuple[str, ...] = ()  # the INVITE's Route headers
    cseqs: set[int] = field(default_factory=set)
    answered_tag: str | None = None  # To tag of the 2xx its transaction took
    # ACKs sent per dialog (To tag): the ACK, where it went, how often it was resent.
    acks: dict[str, tuple[Request, Address]] = field(default_factory=dict)
    resent: Counter[str] = field(default_factory=Counter)
    ended_at: float | None = None


@dataclass(frozen=True)
class Resend:
    """Send `ack` to `destination` again."""

    ack: Request
    destination: Address


@dataclass(frozen=True)
class HangUp:
    """Acknowledge the answer of dialog `to_tag` and hang it up (once)."""

    invite: SentInvite
    to_tag: str


class Wait:
    """The call is taking this answer now."""


WAIT = Wait()
Verdict = Resend | HangUp | Wait | None  # None: dropped and counted


class InviteAnswers:
    """The INVITEs sent lately, and the judgement of 2xx answers outside a transaction."""

    def __init__(self) -> None:
        self._invites: dict[str, SentInvite] = {}  # by Call-ID
        self._ended: dict[str, float] = {}  # Call-IDs in the order their INVITEs ended
        self._budgets: dict[str, tuple[float, float]] = {}  # source host: tokens, when
        self.dropped: Counter[str] = Counter()
        self._logged_at = 0.0
        self._logged_total = 0

    # ------------------------------------------------------------ what the UA tells

    def started(self, invite: Request, destination: Address) -> None:
        """An INVITE (or its authorised repetition, same Call-ID) leaves for `destination`."""
        self.forget_old()
        call_id = invite.call_id
        record = self._invites.get(call_id)
        if record is None:
            record = SentInvite(
                call_id,
                invite.from_tag or "",
                invite.headers.get("From") or "",
                invite.uri,
                destination,
                tuple(invite.headers.get_all("Route")),
            )
            self._invites[call_id] = record
        record.cseqs.add(invite.cseq[0])
        record.destination = destination
        record.ended_at = None
        self._ended.pop(call_id, None)

    def ended(self, invite: Request, final: Response | None) -> None:
        """The INVITE's transaction is over, with `final` (None: timeout or cancelled)."""
        record = self._invites.get(invite.call_id)
        if record is None:
            return
        if final is not None and final.status // 100 == 2:
            record.answered_tag = final.to_tag or ""
        record.ended_at = time.monotonic()
        self._ended.pop(record.call_id, None)
        self._ended[record.call_id] = record.ended_at

    def acknowledged(self, call_id: str, ack: Request, destination: Address) -> None:
        """The call sent `ack` for its answer: retransmissions of that answer get it."""
        record = self._invites.get(call_id)
        if record is not None:
            record.acks[ack.to_tag or ""] = (ack, destination)

    def forget_old(self) -> None:
        cutoff = time.monotonic() - MEMORY_S
        while self._ended:
            call_id = next(iter(self._ended))
            if self._ended[call_id] >= cutoff:
                break
            del self._ended[call_id]
            self._invites.pop(call_id, None)

    # ------------------------------------------------------------ judging an answer

    def judge(self, response: Response, source: Address, *, in_call: bool) -> Verdict:
        """What a 2xx to INVITE outside its transaction gets; `in_call`: a call still
        holds its Call-ID. Counts and logs what is dropped."""
        self.forget_old()
        verdict, why = self._match(response, in_call=in_call)
        if isinstance(verdict, Resend | HangUp) and not self._may_send(source[0]):
            verdict, why = None, "too many from one source"
        if verdict is None:
            self.drop(why, response, source)
        return verdict

    def _match(self, response: Response, *, in_call: bool) -> tuple[Verdict, str]:
        record = self._invites.get(response.call_id)
        if record is None:
            return None, "no INVITE of ours"
        try:
            from_tag, to_tag = response.from_tag, response.to_tag
        except SipError:
            return None, "unreadable tags"
        cseq = response.cseq[0]
        if from_tag != record.from_tag or cseq not in record.cseqs:
            return None, "not our tag or CSeq"
        if to_tag is None:
            return None, "no To tag"
        if record.ended_at is None:
            # The transaction is running and this is not its branch: no peer of ours
            # answers an INVITE on another branch.
            return None, "not the INVITE's transaction"
        known = record.acks.get(to_tag)
        if known is not None:
            if record.resent[to_tag] >= MAX_ACK_RESENDS:
                return None, "ACK sent often enough"
            record.resent[to_tag] += 1
            return Resend(*known), ""
        if to_tag == record.answered_tag and in_call:
            return WAIT, ""
        if len(record.acks) - (record.answered_tag in record.acks) >= MAX_DIALOGS:
            return None, "too many dialogs for one INVITE"
        return HangUp(record, to_tag), ""

    def hung_up(self, invite: SentInvite, to_tag: str, ack: Request) -> None:
        """The ACK sent for dialog `to_tag` of `invite`: its retransmissions get it."""
        invite.acks[to_tag] = (ack, invite.destination)

    def _may_send(self, host: str) -> bool:
        now = time.monotonic()
        tokens, then = self._budgets.get(host, (SEND_BURST, now))
        tokens = min(SEND_BURST, tokens + (now - then) * SEND_RATE)
        # Re-inserted: the table stays in the order sources were last heard.
        self._budgets.pop(host, None)
        while len(self._budgets) >= MAX_SOURCES:  # a spray of sources: the longest quiet go
            del self._budgets[next(iter(self._budgets))]
        if tokens < 1.0:
            self._budgets[host] = (tokens, now)
            return False
        self._budgets[host] = (tokens - 1.0, now)
        return True

    def drop(self, why: str, response: Response, source: Address) -> None:
        """Counts a dropped answer; logs the count at most every LOG_EVERY_S."""
        self.dropped[why] += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY_S:
            return
        total = sum(self.dropped.values())
        log.warning(
            "dropped %d 2xx answers outside an INVITE transaction (%d in all: %s); "
            "the latest, %d %s, from %s:%d",
            total - self._logged_total,
            total,
            ", ".join(f"{n} {reason}" for reason, n in self.dropped.most_common()),
            response.status,
            response.cseq[1],
            *source,
        )
        self._logged_at, self._logged_total = now, total


def ack_and_bye(
    invite: SentInvite, response: Response, new_request: Callable[..., Request]
) -> tuple[Request, Request]:
    """The ACK and the BYE for the dialog `response` makes of `invite`: the INVITE's
    Request-URI, From and Route, the answer's To and CSeq; nothing else of the answer
    (its Contact, its Record-Route) is taken (docs/decisions/sip-stray-answers.md)."""
    to = response.headers.get("To") or ""
    made = []
    for method, cseq in (("ACK", response.cseq[0]), ("BYE", response.cseq[0] + 1)):
        request: Request = new_request(method, invite.uri, to, call_id=invite.call_id, cseq=cseq)
        request.headers.set("From", invite.from_header)
        request.headers.remove("Contact")
        for route in invite.routes:
            request.headers.add("Route", route)
        made.append(request)
    return made[0], made[1]


def ack_for_failure(invite: Request, response: Response) -> Request:
    """The INVITE transaction's ACK of a non-2xx final answer (RFC 3261 17.1.1.3)."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    for name in ("From", "Call-ID"):
        headers.add(name, invite.headers.get(name) or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("CSeq", f"{invite.cseq[0]} ACK")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return Request("ACK", invite.uri, headers)
