"""The dialogue of a trigger call, as rundruf.lua runs it (pure: no I/O).

`Dialogue` is the caller at the keypad and what they hear: one entry of keys
per question, in order; when the entries run out the caller hangs up. The menu
is decided here; the PIN (which needs the throttle file) and the post are in
`sim_trigger`. Tries, timings, keys and prompt files come from the dialogue's one
definition, edge_agent/ivr/definition.py, which rundruf.lua's M.DEFAULTS, M.KEYS and
M.PROMPTS equal (tests/callrouting/test_ivr_definition.py).
"""

from __future__ import annotations

import enum
import io
import re
import wave
from collections import deque
from collections.abc import Sequence

from edge_agent.ivr.definition import KEYS as IVR_KEYS
from edge_agent.ivr.definition import PROMPTS, setting
from edge_agent.pbx.sim_state import SimState, SimUser

PIN_TRIES = int(setting("pin_tries"))
PIN_MAX_DIGITS = int(setting("pin_max_digits"))
MENU_ROUNDS = int(setting("menu_rounds"))
RECORD_MAX_SECONDS = setting("record_max_seconds")
RECORD_TAKES = int(setting("record_takes"))
# POST /jobs: waits of 0.5 s doubling to at most 4 s, until they add up to 15 s (M.post_waits).
POST_WINDOW = float(setting("post_window"))
POST_BACKOFF_FIRST = float(setting("post_backoff_first"))
POST_BACKOFF_MAX = float(setting("post_backoff_max"))
PIN_END = IVR_KEYS["pin_end"]
KEYS = frozenset("0123456789*#")  # what a keypad can send
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
# The central service names a group's agent user "Rundruf <group name>"
# (api/services/directory.py); the simulator links them by that name alone.
AGENT_PREFIX = "Rundruf "


class Prompt(enum.StrEnum):
    """The script's prompt files: definition.PROMPTS, a member per name (upper case)."""

    PIN = PROMPTS["pin"]
    PIN_WRONG = PROMPTS["pin_wrong"]
    WAIT = PROMPTS["wait"]
    MENU = PROMPTS["menu"]
    INVALID = PROMPTS["invalid"]
    CONFIRM_TEST = PROMPTS["confirm_test"]
    CONFIRM_ALARM = PROMPTS["confirm_alarm"]
    RECORD = PROMPTS["record"]
    RECORD_CHECK = PROMPTS["record_check"]
    RECORD_FAILED = PROMPTS["record_failed"]
    TRIGGERED = PROMPTS["triggered"]
    FAILED = PROMPTS["failed"]
    CANCELLED = PROMPTS["cancelled"]
    GOODBYE = PROMPTS["goodbye"]
    STOPPED = PROMPTS["stopped"]
    STOP_NONE = PROMPTS["stop_none"]


# The job mode that stops the group's running broadcast (issue 17; rundruf.lua's 0).
STOP_MODE = 0


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
            if key == IVR_KEYS["cancel"]:
                self.play(Prompt.CANCELLED)
                return Outcome.CANCELLED
            if key == IVR_KEYS["stop"]:  # a stop job for the group's running broadcast
                return STOP_MODE, None
            if key == IVR_KEYS["alarm_recorded"]:
                audio = self.record_message()
                if audio is not None:
                    return audio if isinstance(audio, Outcome) else (3, audio)
            elif key in (IVR_KEYS["test"], IVR_KEYS["alarm"]):
                mode = 1 if key == IVR_KEYS["test"] else 2
                yes = self.confirm(mode)
                if yes is None:
                    return Outcome.HANGUP
                if yes:
                    return mode, None
            else:
                self.play(Prompt.INVALID)
        self.play(Prompt.GOODBYE)
        return Outcome.MENU_EXHAUSTED

    def confirm(self, mode: int) -> bool | None:
        """Modes 1 and 2: 1 starts, any other key goes back to the menu; None: hung up."""
        self.play(Prompt.CONFIRM_TEST if mode == 1 else Prompt.CONFIRM_ALARM)
        key = self.read(1)
        return None if key is None else key == IVR_KEYS["confirm"]

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
            if key == IVR_KEYS["record_send"]:
                return cut_recording(self.recording, RECORD_MAX_SECONDS)
            if key != IVR_KEYS["record_again"]:
                return None
        return None
