"""Dialer adapters behind the `Dialer` port (port.py): `sim` now, `sip` next."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.dialer.port import (
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallRequest,
    Dialer,
    DialerClosed,
    DialerError,
    DuplicateCall,
    EventSink,
)

if TYPE_CHECKING:
    from edge_agent.settings import AgentSettings


def make_dialer(settings: AgentSettings) -> Dialer:
    from edge_agent.dialer.sim import SimDialer

    return SimDialer(
        settings.sim_state, time_scale=settings.sim_time_scale, max_parallel=settings.channels
    )


__all__ = [
    "CallEvent",
    "CallEventKind",
    "CallOutcome",
    "CallRequest",
    "Dialer",
    "DialerClosed",
    "DialerError",
    "DuplicateCall",
    "EventSink",
    "make_dialer",
]
