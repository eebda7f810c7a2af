"""Dialer adapters behind the `Dialer` port (port.py): `sim` now, `sip` next."""

from __future__ import annotations

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
]
