"""The INVITEs a peer sends in our dialogs (re-INVITEs: hold, address change, refresh):
their final answers until the ACK, and a CANCEL of one still unanswered.

RFC 3261 13.3.1.4 and 17.2.1: over UDP a final answer to an INVITE is sent again
after T1, doubling up to T2, until its ACK comes or 64 x T1 have passed; a 2xx by the
user agent core, a non-2xx by the server transaction (Timer G), the same schedule
both. A client that got our "100 Trying" has stopped retransmitting its INVITE
(17.1.1.2), so before this a final answer sent once and lost left the phone's
re-INVITE hanging (issue 15, review). The ACK of a 2xx is a request of its own, the
ACK of a non-2xx shares the INVITE's branch; both name the INVITE's Call-ID and CSeq
number, which is how they are matched here (the dialog's tags and peer are checked
before, `dialog_match.py`).

A CANCEL (9.2) names the INVITE by its branch, Call-ID and CSeq number: while the
answer is still to come, the INVITE gets 487 Request Terminated and the CANCEL 200;
once the final answer is out, the CANCEL gets 200 and changes nothing; for an INVITE
we never had, 481.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from edge_agent.sip.message import Request, Response, response_to

log = logging.getLogger(__name__)

Address = tuple[str, int]
T1, T2 = 0.5, 4.0
MAX_OPEN = 1024  # INVITEs remembered at once, the oldest forgotten first

Key = tuple[str, int]  # Call-ID, CSeq number


class Terminated(NamedTuple):
    """The 487 a CANCEL earns an INVITE still unanswered, and where the INVITE came from."""

    invite: Request
    answer: Response
    source: Address


@dataclass
class _Served:
    request: Request
    source: Address
    final: Response | None = None
    timer: asyncio.TimerHandle | None = None
    until: float = 0.0

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _key(request: Request) -> Key:
    return request.call_id, request.cseq[0]


class InviteServer:
    """The INVITEs of our dialogs under way: `send(answer, to)` sends an answer; `reliable()`
    says whether the transport retransmits by itself (TCP, TLS: nothing to repeat)."""

    def __init__(
        self, send: Callable[[Response, Address], None], reliable: Callable[[], bool]
    ) -> None:
        self._send = send
        self._reliable = reliable
        self._open: OrderedDict[Key, _Served] = OrderedDict()
        self.resent = 0  # final answers sent again, since the start

    def __len__(self) -> int:
        return len(self._open)

    def answered(self, request: Request, answer: Response, source: Address) -> None:
        """`answer` went to `source` for the INVITE `request`: remembered while it may be
        cancelled (1xx) or must be repeated until its ACK (final)."""
        key = _key(request)
        served = self._open.get(key)
        if served is None or served.request.branch != request.branch:
            if served is not None:
                served.stop()
            served = _Served(request, source)
            self._open[key] = served
            while len(self._open) > MAX_OPEN:
                _, oldest = self._open.popitem(last=False)
                oldest.stop()
        if answer.status >= 200 and served.final is None:
            served.final = answer
            loop = asyncio.get_running_loop()
            served.until = loop.time() + 64 * T1
            if self._reliable():  # nothing to repeat: kept for a CANCEL until the ACK
                served.timer = loop.call_at(served.until, self._expire, key, served)
                return
            served.timer = loop.call_later(T1, self._resend, key, served, T1)

    def finished(self, request: Request) -> bool:
        """Whether the INVITE `request` has had its final answer (a CANCEL's 487, say)."""
        served = self._open.get(_key(request))
        return served is not None and served.final is not None

    def acknowledged(self, ack: Request) -> None:
        """An ACK of our dialog: the final answer it acknowledges is not sent again."""
        served = self._open.pop(_key(ack), None)
        if served is not None:
            served.stop()

    def cancel(self, cancel: Request) -> tuple[Response, Terminated | None]:
        """The answer to `cancel` and, when it ends an INVITE still unanswered, the 487 for
        that INVITE (to be sent like any final answer: `answered`)."""
        served = self._open.get(_key(cancel))
        if served is None or served.request.branch != cancel.branch:
            return response_to(cancel, 481, "Call/Transaction Does Not Exist"), None
        ok = response_to(cancel, 200, "OK")
        if served.final is not None:
            return ok, None
        ended = response_to(served.request, 487, "Request Terminated")
        return ok, Terminated(served.request, ended, served.source)

    def _expire(self, key: Key, served: _Served) -> None:
        if self._open.get(key) is served:
            del self._open[key]

    def _resend(self, key: Key, served: _Served, interval: float) -> None:
        served.timer = None
        if self._open.get(key) is not served or served.final is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= served.until:
            # No ACK within 64 x T1: the peer is gone (for a 2xx, RFC 3261 13.3.1.4
            # would end the dialog; the call's own timers and BYE do that here).
            log.info(
                "no ACK for our %d to the INVITE of %s within %g s",
                served.final.status,
                key[0],
                64 * T1,
            )
            del self._open[key]
            return
        self._send(served.final, served.source)
        self.resent += 1
        interval = min(interval * 2, T2)
        served.timer = loop.call_at(
            min(loop.time() + interval, served.until), self._resend, key, served, interval
        )

    def close(self) -> None:
        for served in self._open.values():
            served.stop()
        self._open.clear()
