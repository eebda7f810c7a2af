"""A scripted caller for the agent's IVR (edge_agent/ivr/port.py's CallerLine).

The caller's answers come in order: a str answers a `read_digits` (what the caller
typed, "" for silence until the time-out), bytes answer a `record`, GONE hangs up at
that question; when the answers run out the caller hangs up. A `During` answers the
look for a key pressed while the prompt before it played (a read that waits 0 s);
without one that look finds none. What the caller heard is
in `heard`, by prompt name ("tone" for the record tone, "playback" for their own
message). Prompts are their names as bytes (`prompt`), so the line can tell them apart.
"""

from __future__ import annotations

import array
from collections import deque
from collections.abc import Sequence

from edge_agent.ivr import definition
from edge_agent.ivr.port import CallerGone
from edge_agent.ivr.prompts import record_tone

GONE = object()


class During(str):
    """Keys the caller pressed while the prompt before played."""


def prompt(name: str) -> bytes:
    return f"prompt:{name}".encode()


def speech(seconds: float = 1.0, level: int = 8000) -> bytes:
    """PCM that counts as a message: a loud square wave."""
    frames = int(definition.SAMPLE_RATE * seconds)
    return array.array("h", [level if n % 20 < 10 else -level for n in range(frames)]).tobytes()


class ScriptedLine:
    def __init__(
        self,
        answers: Sequence[str | bytes | object],
        *,
        caller: str = "+4930111",
        caller_name: str | None = "Erika Muster",
        call_id: str = "call-1@pbx",
        from_tag: str = "tag-1",
        gone_at_prompt: str | None = None,
    ) -> None:
        self.answers: deque[str | bytes | object] = deque(answers)
        self._caller = caller
        self._caller_name = caller_name
        self._call_id = call_id
        self._from_tag = from_tag
        self.gone_at_prompt = gone_at_prompt
        self.heard: list[str] = []
        self.barge_in: list[bool] = []
        self.reads: list[tuple[int, float, str | None]] = []
        self.records: list[tuple[float, float, str, float]] = []
        self.cleared = 0
        self.authenticated_calls = 0
        self.stage_extended = 0.0  # pin_stage_extend's seconds, summed
        self.hung_up = False
        self.gone = False
        self.recorded: list[bytes] = []

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def from_tag(self) -> str:
        return self._from_tag

    @property
    def caller_number(self) -> str:
        return self._caller

    @property
    def caller_name(self) -> str | None:
        return self._caller_name

    def _check(self) -> None:
        if self.gone:
            raise CallerGone

    def _name(self, pcm: bytes) -> str:
        if pcm.startswith(b"prompt:"):
            return pcm.removeprefix(b"prompt:").decode()
        if pcm == record_tone():
            return "tone"
        if pcm in self.recorded:
            return "playback"
        return f"<{len(pcm)} bytes>"

    async def play(self, pcm: bytes, *, barge_in: bool = True) -> None:
        self._check()
        name = self._name(pcm)
        if name == self.gone_at_prompt:
            self.gone = True
            raise CallerGone
        self.heard.append(name)
        self.barge_in.append(barge_in)

    def _next(self) -> str | bytes | object:
        self._check()
        if not self.answers:
            self.gone = True
            raise CallerGone
        answer = self.answers.popleft()
        if answer is GONE:
            self.gone = True
            raise CallerGone
        return answer

    async def read_digits(self, max_digits: int, wait_s: float, end: str | None) -> str:
        self.reads.append((max_digits, wait_s, end))
        if wait_s <= 0:  # only what is queued already
            self._check()
            if self.answers and isinstance(self.answers[0], During):
                return str(self.answers.popleft())
            return ""
        answer = self._next()
        assert isinstance(answer, str), f"the script has {answer!r} where keys are read"
        return answer

    def clear_digits(self) -> None:
        self.cleared += 1

    async def record(
        self, max_seconds: float, silence_seconds: float, end_key: str, no_speech_s: float = 0.0
    ) -> bytes:
        self.records.append((max_seconds, silence_seconds, end_key, no_speech_s))
        answer = self._next()
        assert isinstance(answer, bytes), f"the script has {answer!r} where a recording is"
        self.recorded.append(answer)
        return answer

    def authenticated(self) -> None:
        self.authenticated_calls += 1

    def pin_stage_extend(self, seconds: float) -> None:
        self.stage_extended += seconds

    async def hang_up(self) -> None:
        self.hung_up = True
        self.gone = True
