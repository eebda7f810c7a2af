"""The IVR as the SIP user agent's router (`edge_agent/sip/incoming.py`'s `Router`).

`IvrAnswering.route` decides by the called-number candidates the SIP side read
from the INVITE (most original first); its refusals become the SIP answers (480
with Retry-After while no group is cached, 404 for a number no group has), an
accepted call rings `RING_S` and then runs the trigger dialogue.
"""

from __future__ import annotations

from edge_agent.ivr.answering import NOT_CONFIGURED, Handler, IvrAnswering, Refusal
from edge_agent.ivr.port import CallerLine
from edge_agent.sip.incoming import Accept, IncomingInvite, Refuse
from edge_agent.sip.incoming import Handler as SipHandler

RING_S = 0.0  # answered at once: an alarm must not wait for a ring tone
# The longest a call may last before its right PIN (the line ends it then, freeing its
# place for the next caller): three tries with the longest throttle waits before two of
# them (2 x 60 s) and slow typing still fit; a stranger keying one digit every 9 s no
# longer holds a place for minutes (review of issue 16, finding 2).
PIN_STAGE_S = 180.0


class SipRouter:
    def __init__(self, ivr: IvrAnswering) -> None:
        self.ivr = ivr

    def route(self, invite: IncomingInvite) -> Refuse | Accept:
        decided = self.ivr.route(invite.called)
        if isinstance(decided, Refusal):
            if decided == NOT_CONFIGURED:
                return Refuse.not_configured()
            return Refuse(decided.status, decided.reason)
        return Accept(_discarding(decided), ring_s=RING_S, pin_stage_s=PIN_STAGE_S)


def _discarding(handler: Handler) -> SipHandler:
    async def answer(line: CallerLine) -> None:
        await handler(line)  # the outcome is logged by the flow

    return answer
