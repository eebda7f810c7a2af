"""What a trigger caller presses and when, against the agent's German prompts.

Keys for a question may come as soon as the IVR asks it (it forgets earlier keys then):
a question's prompt stops at the first key (barge-in), prompts that only say something
do not. So the caller waits ANSWER_S after a key before the next question's answer, and
where the IVR first says something (a wrong PIN, the wait after one, the recording
prompt and its tone) the caller waits that prompt's length from the agent's own prompt
files, plus a margin.
"""

from __future__ import annotations

import wave
from functools import cache

from edge_agent.ivr import definition
from edge_agent.ivr.prompts import PROMPT_DIR
from tests.sip.caller_rtp import Keys, Speak, Step, Wait

ANSWER_S = 1.0  # after a key, before the next answer (the IVR's turn: check, clear, ask)
MARGIN_S = 1.0
LANGUAGE = "de"


@cache
def prompt_seconds(name: str) -> float:
    """How long the agent's prompt `name` (definition.PROMPTS) plays."""
    path = PROMPT_DIR / LANGUAGE / definition.PROMPTS[name]
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def wrong_pin_wait(nth: int) -> float:
    """After the caller's `nth` wrong PIN: "PIN falsch", then the throttle's delay (with
    "bitte warten" when there is one), then the PIN prompt asks again."""
    delays = definition.DEFAULTS["throttle_delays"]
    assert isinstance(delays, tuple)
    delay = float(delays[min(nth, len(delays) - 1)])
    waiting = prompt_seconds("wait") if delay else 0.0
    return prompt_seconds("pin_wrong") + waiting + delay + MARGIN_S


def alarm(pin: str, mode: str) -> list[Step]:
    """Mode 1 (test) or 2 (alarm): PIN, #, the mode, 1 to confirm."""
    return [Wait(ANSWER_S), Keys(pin + "#"), Wait(ANSWER_S), Keys(mode), Wait(ANSWER_S), Keys("1")]


def recorded_alarm(pin: str, message: bytes) -> list[Step]:
    """Mode 3: PIN, #, 3, the recording prompt and its tone, the message, # to end it,
    and 1 (send) while the agent plays the recording back."""
    record = prompt_seconds("record") + definition.RECORD_TONE_MS / 1000 + MARGIN_S
    return [
        *(Wait(ANSWER_S), Keys(pin + "#"), Wait(ANSWER_S), Keys("3")),
        *(Wait(record), Speak(message), Wait(0.3), Keys("#")),
        *(Wait(ANSWER_S), Keys("1")),
    ]


def wrong_pins(wrong: str, tries: int = 3) -> list[Step]:
    """`tries` wrong PINs, each when the IVR asks for it again."""
    steps: list[Step] = [Wait(ANSWER_S), Keys(wrong + "#")]
    for nth in range(1, tries):
        steps += [Wait(wrong_pin_wait(nth)), Keys(wrong + "#")]
    return steps
