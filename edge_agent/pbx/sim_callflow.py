"""The dialogue of a trigger call, as rundruf.lua runs it (pure: no I/O).

`Dialogue` is the caller at the keypad and what they hear: one entry of keys
per question, in order; when the entries run out the caller hangs up. The menu
is decided here; the PIN (which needs the throttle file) and the post are in
`sim_trigger`. Constants are the script's defaults (M.DEFAULTS, M.PROMPTS).
"""

from __future__ import annotations

import enum
import io
import re
import wave
from collections import deque
from collections.abc import Sequence

from edge_agent.pbx.sim_state import SimState, SimUser

PIN_TRIES = 3
PIN_MAX_DIGITS = 16
MENU_ROUNDS = 5
RECORD_MAX_SECONDS = 60
RECORD_TAKES = 3
# POST /jobs: waits of 0.5 s doubling to at most 4 s, until they add up to 15 s (M.post_waits).
POST_WINDOW = 15.0
POST_BACKOFF_FIRST = 0.5
POST_BACKOFF_MAX = 4.0
KEYS = frozenset("0123456789*#")
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
# The central service names a group's agent user "Rundruf <group name>"
# (api/services/directory.py); the simulator links them by that name alone.
AGENT_PREFIX = "Rundruf "


class Prompt(enum.StrEnum):
    """The script's prompt files (M.PROMPTS in rundruf.lua)."""

    PIN = "rundruf_pin.wav"
    PIN_WRONG = "rundruf_pin_falsch.wav"
    WAIT = "rundruf_bitte_warten.wav"
    MENU = "rundruf_menue.wav"
    INVALID = "rundruf_ungueltig.wav"
    CONFIRM_TEST = "rundruf_bestaetigen_test.wav"
    CONFIRM_ALARM = "rundruf_bestaetigen_alarm.wav"
    RECORD = "rundruf_aufnahme.wav"
    RECORD_CHECK = "rundruf_aufnahme_pruefen.wav"
    RECORD_FAILED = "rundruf_aufnahme_fehler.wav"
    TRIGGERED = "rundruf_ausgeloest.wav"
    FAILED = "rundruf_fehler.wav"
    CANCELLED = "rundruf_abgebrochen.wav"
    GOODBYE = "rundruf_auf_wiederhoeren.wav"


class Outcome(enum.StrEnum):
    POSTED = "posted"  # the job service took the job (201, or 200 for a repeat)
    WRONG_PIN_HANGUP = "wrong_pin_hangup"  # 3 tries without the right PIN
    CANCELLED = "cancelled"  # * in the menu
    HANGUP = "hangup"  # the caller's keys ran out
    MENU_EXHAUSTED = "menu_exhausted"  # 5 menu rounds without a choice
    UNKNOWN_NUMBER = "unknown_number"  # no agent user (with a PIN) has this extension
    PBX_UNREACHABLE = "pbx_unreachable"  # no simulator state, or its unreachable fault
    POST_FAILED = "post_failed"  # every attempt failed, or one was refused (4xx)


def check_keys(digits: Sequence[str]) -> None:
    """Raises ValueError when an entry holds anything but 0-9, * and #."""
    for entry in digits:
        if not set(entry) <= KEYS:
            raise ValueError(f"keys may be 0-9, * and # only, not {entry!r}")


def cut_recording(data: bytes, max_seconds: float) -> bytes:
    """The WAV as the PBX keeps it when the time limit ends the recording.

    Anything `wave` cannot read is left as it is: the job service judges it.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as source:
            params, limit = source.getparams(), int(max_seconds * source.getframerate())
            if source.getnframes() <= limit:
                return data
            frames = source.readframes(limit)
    except (wave.Error, EOFError):
        return data
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setparams(params)
        target.writeframes(frames)
    return out.getvalue()


def member_states(state: SimState, agent: SimUser) -> dict[str, int] | None:
    """The states of the agent's group members by pbx user id; None without a group."""
    name = agent.name.removeprefix(AGENT_PREFIX).strip().casefold()
    group = next((g for g in state.groups if g.name.strip().casefold() == name), None)
    if group is None:
        return None
    return {m: int(state.user(m).state) for m in group.member_ids}


def idempotency_key(agent_number: str, call_id: str, now: float) -> str:
    """The script's key, "<agent>-<call id>-<unix time>", in the job service's alphabet."""
    agent, stamp = _UNSAFE.sub("_", agent_number)[:32], str(int(now))
    room = 128 - len(agent) - len(stamp) - 2
    return f"{agent}-{_UNSAFE.sub('_', call_id)[:room]}-{stamp}"


def is_permanent(status: int) -> bool:
    # 4xx answers will not change on a retry (bad token, bad body); 408/425/429 might.
    return 400 <= status < 500 and status not in (408, 425, 429)


def post_waits(
    first: float = POST_BACKOFF_FIRST, cap: float = POST_BACKOFF_MAX, window: float = POST_WINDOW
) -> tuple[float, ...]:
    """The waits between POST /jobs attempts: doubling, capped, adding up to the window."""
    waits: list[float] = []
    wait = first
    while sum(waits) < window:
        waits.append(wait)
        wait = min(wait * 2, cap)
    return tuple(waits)


class Dialogue:
    """The caller's keys and the prompts they heard, in order."""

    def __init__(self, digits: Sequence[str], recording: bytes | None) -> None:
        check_keys(digits)
        self.keys = deque(digits)
        self.recording = recording
        self.prompts: list[Prompt] = []

    def play(self, prompt: Prompt) -> None:
        self.prompts.append(prompt)

    def read(self, max_keys: int, terminator: str | None = None) -> str | None:
        """The caller's next entry ("" is silence until the time-out); None when they
        hang up instead."""
        if not self.keys:
            return None
        entry = self.keys.popleft()
        if terminator is not None:
            entry = entry.split(terminator, 1)[0]
        return entry[:max_keys]

    def choose_mode(self) -> tuple[int, bytes | None] | Outcome:
        """The mode and, for mode 3, the recording; or how the call ended."""
        for _ in range(MENU_ROUNDS):
            self.play(Prompt.MENU)
            key = self.read(1)
            if key is None:
                return Outcome.HANGUP
            if key == "*":
                self.play(Prompt.CANCELLED)
                return Outcome.CANCELLED
            if key == "3":
                audio = self.record_message()
                if audio is not None:
                    return audio if isinstance(audio, Outcome) else (3, audio)
            elif key in ("1", "2"):
                yes = self.confirm(int(key))
                if yes is None:
                    return Outcome.HANGUP
                if yes:
                    return int(key), None
            else:
                self.play(Prompt.INVALID)
        self.play(Prompt.GOODBYE)
        return Outcome.MENU_EXHAUSTED

    def confirm(self, mode: int) -> bool | None:
        """Modes 1 and 2: 1 starts, any other key goes back to the menu; None: hung up."""
        self.play(Prompt.CONFIRM_TEST if mode == 1 else Prompt.CONFIRM_ALARM)
        key = self.read(1)
        return None if key is None else key == "1"

    def record_message(self) -> bytes | Outcome | None:
        """Mode 3: the recording to send ("1" after it is the confirmation), HANGUP,
        or None for back to the menu."""
        for _ in range(RECORD_TAKES):
            self.play(Prompt.RECORD)
            if self.recording is None:
                self.play(Prompt.RECORD_FAILED)
                continue
            self.play(Prompt.RECORD_CHECK)
            key = self.read(1)
            if key is None:
                return Outcome.HANGUP
            if key == "1":
                return cut_recording(self.recording, RECORD_MAX_SECONDS)
            if key != "2":
                return None
        return None
