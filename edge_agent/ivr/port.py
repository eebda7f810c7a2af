"""What the IVR needs of a caller's line; the SIP user agent's incoming call provides it
(edge_agent/sip/incoming.py), tests provide scripted lines.

Audio is 8 kHz 16-bit mono PCM (little-endian), the telephony master's format: the
line encodes and decodes G.711 itself. Keys are "0"-"9", "*", "#" from RFC 4733
events or SIP INFO, whichever the caller's phone sends.
"""

from __future__ import annotations

from typing import Protocol


class CallerGone(Exception):
    """The caller hung up (BYE, CANCEL) or the line broke; the IVR stops at once."""


class CallerLine(Protocol):
    @property
    def call_id(self) -> str:
        """The SIP Call-ID: part of the trigger's idempotency key (with the From tag)."""
        ...

    @property
    def from_tag(self) -> str:
        """The tag of the INVITE's From: a repeated INVITE keeps it, a new call that
        reuses a Call-ID (a PBX restarted, a tool's default ids) has another; "" if none."""
        ...

    @property
    def caller_number(self) -> str:
        """Who calls: the user part of P-Asserted-Identity or From; "" when anonymous."""
        ...

    @property
    def caller_name(self) -> str | None:
        """The display name the caller's PBX sent, if any."""
        ...

    async def play(self, pcm: bytes, *, barge_in: bool = True) -> None:
        """Plays `pcm` to the caller, in real time. With `barge_in` the first key the
        caller presses stops the playback; every key stays queued for `read_digits`.
        Raises CallerGone."""
        ...

    async def read_digits(self, max_digits: int, wait_s: float, end: str | None) -> str:
        """Keys already queued and then pressed, until `end` (not included), `max_digits`
        keys, or `wait_s` seconds after the last key (or the call to this); "" when
        none. Raises CallerGone."""
        ...

    def clear_digits(self) -> None:
        """Forgets queued keys (a new question must not take an old answer)."""
        ...

    async def record(
        self, max_seconds: float, silence_seconds: float, end_key: str, no_speech_s: float = 0.0
    ) -> bytes:
        """What the caller says from now: until `end_key`, `silence_seconds` without
        speech after speech began, `no_speech_s` (when > 0) without any speech from the
        start, or `max_seconds`. PCM as above. Raises CallerGone."""
        ...

    def authenticated(self) -> None:
        """The caller entered the right PIN: the line's limits for callers before the PIN
        (how long that stage may last, how many such calls one number may have) no
        longer apply to this call."""
        ...

    def pin_stage_extend(self, seconds: float) -> None:
        """The IVR itself makes the caller wait `seconds` (the PIN throttle): the limit of
        the stage before the PIN moves back as far, so that the throttle never cuts a
        caller off before the PIN is asked for."""
        ...

    async def hang_up(self) -> None:
        """Ends the call (BYE); a line that is gone already is left alone."""
        ...
