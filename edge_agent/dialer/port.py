"""The `Dialer` port: call one member, play the announcement, collect the confirmation.

Adapters (one module each, named after the system): `sim` (the simulator twin
of the SwyxWare simulator) and later `sip` (SIP user agent with G.711 RTP).

All calls of one dialer run as coroutines on one asyncio loop; a broadcast
runs many `call()`s side by side (the executor bounds them by `max_parallel`).
A call reports what happens as `CallEvent`s, in order:

    STARTED → RINGING → ANSWERED → PLAYING → (DTMF → PLAYING)* → DTMF → CONFIRMED → ENDED

A stopped broadcast's answered call (`CallRequest.stopped`, issue 17) plays one more
PLAYING, the stop notice, right before ENDED ANSWERED with the detail STOPPED.

Any prefix of that may be cut short by ENDED, which always comes last and
exactly once. After ANSWERED the member may put the call on hold: HELD, then
RESUMED and PLAYING again (the round starts over), or ENDED while on hold; a key
pressed on hold is a DTMF event too (only the confirm digit does anything then).
Telephony outcomes (busy, no answer, a dead trunk, an unplayable announcement)
are never raised: they end the call with an outcome and a reason.
"""

from __future__ import annotations

import asyncio
import enum
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from edge_agent.sip.registration import RegistrationStatus

# Keys a phone can send as DTMF (RFC 4733 events 0-15).
DTMF_DIGITS = frozenset("0123456789*#ABCD")
# The detail of a call the broadcast's stop ended (issue 17): a code the website words.
STOPPED = "broadcastStopped"


class CallOutcome(enum.StrEnum):
    """How a call ended; the values are the central service's `call_outcome` names.

    `skipped_busy` is not here: the executor decides that from user states
    before it dials, the dialer never sees such a call.
    """

    CONFIRMED = "confirmed"  # the member pressed the confirm digit
    ANSWERED = "answered"  # answered and heard it, but did not confirm
    BUSY = "busy"
    NO_ANSWER = "no_answer"  # rang until the ring timeout, or the phone is not logged on
    REJECTED = "rejected"  # declined by the member or by do-not-disturb
    FAILED = "failed"  # anything else; the ENDED event's detail says what


class CallEventKind(enum.StrEnum):
    STARTED = "started"
    RINGING = "ringing"
    ANSWERED = "answered"
    PLAYING = "playing"  # once per round: the announcement `repetitions` times
    DTMF = "dtmf"
    CONFIRMED = "confirmed"
    HELD = "held"  # the member put the call on hold: nothing is sent, no timer runs
    RESUMED = "resumed"  # back from hold: the message starts again
    ENDED = "ended"


@dataclass(frozen=True)
class CallRequest:
    """One call to one member, as the executor asks for it.

    `call_id` comes from the executor and names this attempt: events carry it,
    and a dialer refuses a second call with an id that is still running.
    Raises ValueError when a field is out of range (a programming error).
    """

    call_id: str
    target: str  # the member's extension
    display_name: str  # shown on the member's phone
    announcement: Path  # WAV, PCM 16-bit mono 8 kHz (the telephony master)
    # Alarm: the PBX is asked to intrude into a running call or auto-answer.
    priority: bool = False
    ring_timeout_s: float = 30.0
    repetitions: int = 1  # plays of the announcement per round
    confirm_digit: str = "1"
    repeat_digit: str = "9"
    max_repeats: int = 2  # extra rounds the member may ask for with `repeat_digit`
    # How long the dialer waits for a digit after a round before it hangs up.
    dtmf_timeout_s: float = 8.0
    # The latest a call on hold is kept (the broadcast's timeout), aware, though a hold
    # begun later still gets a short grace; None: a dialer's own bound from when the hold
    # began. The call then ends ANSWERED "endedOnHold" (docs/decisions/sip-hold.md).
    hold_until: datetime | None = None
    # Set when the broadcast's quorum is reached: a call on hold then (or later) is not
    # waited for any longer and ends ANSWERED "endedOnHoldQuorum".
    quorum_reached: asyncio.Event | None = None
    # Set when the broadcast is stopped (issue 17). Ringing calls the executor cancels; an
    # answered call stops what it plays, plays `stop_notice` ("Der Rundruf wurde beendet")
    # and hangs up: ENDED ANSWERED with the detail STOPPED.
    stopped: asyncio.Event | None = None
    stop_notice: Path | None = None

    def __post_init__(self) -> None:
        if not self.call_id:
            raise ValueError("call_id must not be empty")
        if not self.target:
            raise ValueError("target must not be empty")
        if self.ring_timeout_s <= 0 or self.dtmf_timeout_s <= 0:
            raise ValueError("ring_timeout_s and dtmf_timeout_s must be positive")
        if self.repetitions < 1:
            raise ValueError("repetitions must be at least 1")
        if self.max_repeats < 0:
            raise ValueError("max_repeats must not be negative")
        for digit in (self.confirm_digit, self.repeat_digit):
            if digit not in DTMF_DIGITS:
                raise ValueError(f"{digit!r} is no DTMF digit")
        if self.confirm_digit == self.repeat_digit:
            raise ValueError("confirm_digit and repeat_digit must differ")
        if self.hold_until is not None and self.hold_until.tzinfo is None:
            raise ValueError("hold_until must be timezone-aware")


@dataclass(frozen=True)
class CallEvent:
    """Something that happened on a call.

    `outcome` is set on ENDED only, `digit` on DTMF only; `at` is aware (UTC).
    Raises ValueError when built otherwise (a programming error in an adapter).
    """

    call_id: str
    kind: CallEventKind
    at: datetime
    outcome: CallOutcome | None = None
    detail: str | None = None
    digit: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("a call event's time must be timezone-aware")
        if (self.kind is CallEventKind.ENDED) != (self.outcome is not None):
            raise ValueError("an outcome belongs on the ENDED event, and only there")
        if (self.kind is CallEventKind.DTMF) != (self.digit is not None):
            raise ValueError("a digit belongs on the DTMF event, and only there")


EventSink = Callable[[CallEvent], Awaitable[None]]


class DialerError(Exception):
    """Raised when a dialer is misused or set up wrongly; telephony outcomes are never raised.

    `code`, when set, says why for the attempt's detail (the website words it: a TLS
    certificate the PBX's connection was refused for, say); the text is for the log."""

    def __init__(self, *args: object, code: str | None = None) -> None:
        super().__init__(*args)
        self.code = code


class DialerClosed(DialerError):
    """Raised when a call is placed on a dialer that has been closed."""


class DuplicateCall(DialerError):
    """Raised when a call is placed with the `call_id` of a call that is still running."""


class Dialer(ABC):
    # What the health report names: "sim" or "sip".
    kind: ClassVar[str]

    @property
    @abstractmethod
    def max_parallel(self) -> int:
        """How many calls this dialer can carry at once (trunk channels); a hint, not enforced."""

    @abstractmethod
    async def call(self, request: CallRequest, on_event: EventSink) -> CallOutcome:
        """Runs one call to its end, awaiting `on_event` for each event in order.

        Returns the outcome of the ENDED event. Raises `DialerError` for misuse
        and whatever `on_event` raises. When cancelled it hangs up, emits ENDED
        FAILED "cancelled" and re-raises the cancellation.
        """

    async def start(self) -> None:  # noqa: B027 - a hook: the simulated dialer needs none
        """Gets ready to call, before any alarm (SIP: binds and registers at the PBX).

        Idempotent; `call` starts a dialer that was not started. Raises DialerError
        when it cannot start now (a later start tries again).
        """

    def registration_status(self) -> RegistrationStatus | None:
        """The registration at the PBX for the health report; None where there is none."""
        return None

    def on_status_change(self, listener: Callable[[], None]) -> None:  # noqa: B027 - a hook
        """`listener` is called whenever `registration_status` changes (never, here)."""

    async def busy_members(self, extensions: Mapping[str, str]) -> dict[str, bool | None]:
        """Whether each member (key -> extension) is on the phone now, where the dialer can
        ask the PBX (SIP: dialog state, RFC 4235); None where it cannot tell, as here."""
        return dict.fromkeys(extensions)

    @abstractmethod
    async def close(self) -> None:
        """Hangs up running calls (they end FAILED "dialer closed"); later calls raise."""
