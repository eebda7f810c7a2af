"""Whether the member has the call on hold (issue 15, point 7; docs/decisions/sip-hold.md).

A phone puts a call on hold with its SDP: `a=sendonly` or `a=inactive` (RFC 3264 8.4),
older ones with the address 0.0.0.0 (RFC 2543); `sendrecv` or `recvonly` takes it back
(`sdp.on_hold`). The peer's latest SDP decides: the answer to our INVITE and every
re-offer we accept. Each change is queued for the dialer, which pauses the message.
"""

from __future__ import annotations

import asyncio
import logging

from edge_agent.sip import sdp

__all__ = ["LOGGED_CHANGES", "PeerHold"]

log = logging.getLogger(__name__)

LOGGED_CHANGES = 10  # per call; a phone holding in a loop does not fill the log


class PeerHold:
    """The member's hold of one call: `on_hold` now, and each change on `changes`."""

    __slots__ = ("changed", "changes", "on_hold")

    def __init__(self) -> None:
        self.on_hold = False
        self.changes: asyncio.Queue[bool] = asyncio.Queue()
        self.changed = 0  # how often, in all

    def follow(self, description: sdp.SessionDescription, call_id: str) -> None:
        """Follows the peer's latest SDP: on hold (`sdp.on_hold`) or not."""
        held = sdp.on_hold(description)
        if held != self.on_hold:
            self.on_hold = held
            self.changes.put_nowait(held)
            self.changed += 1
            if self.changed <= LOGGED_CHANGES:
                log.info("call %s %s", call_id, "on hold" if held else "back from hold")
            elif self.changed == LOGGED_CHANGES + 1:
                log.info("call %s: further holds and returns are not logged", call_id)
