"""The contract every `Dialer` adapter keeps, run against each of them.

An adapter's test module subclasses `DialerContract` and provides the fixtures
`dialer` (closed by the fixture afterwards), `confirming_target` (an extension
that answers and presses 1 after the first round) and `unanswered_target` (one
that rings and is never picked up). `TIME_SCALE` says how fast the adapter's
clock runs (the simulator's `time_scale`; 1.0 for real peers), and
`PARALLEL_CALLS` how many calls the parallel case places at once.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
import wave
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.dialer.port import (
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallRequest,
    Dialer,
    DialerClosed,
    DuplicateCall,
)

K = CallEventKind
LETTERS = {
    K.STARTED: "S",
    K.RINGING: "R",
    K.ANSWERED: "A",
    K.PLAYING: "P",
    K.DTMF: "D",
    K.CONFIRMED: "C",
    K.HELD: "H",
    K.RESUMED: "U",
    K.ENDED: "E",
}
# RINGING may be missing (an auto-answering phone sends no 180); a member may ask for
# replays (digits, then PLAYING again); CONFIRMED follows a digit; ENDED may cut in anywhere.
# A stopped broadcast's answered call (issue 17) plays the stop notice before it ends:
# one more PLAYING right before ENDED.
WELL_FORMED = re.compile(r"SR?(A(P(D+P)*(D+C|D*P?))?)?E")
# A hold (after PLAYING or a digit) ends with RESUMED and the round played again, or
# the call ends on hold: without them the sequence is one of the above. A key pressed
# on hold is a digit there; only the confirm digit counts (D then C).
HOLDS = re.compile(r"(HD*U)+P")
ON_HOLD_AT_THE_END = re.compile(r"(HD*U)*H(D*C)?D*E$")


def write_wav(path: Path, seconds: float, rate: int = 8000, channels: int = 1) -> Path:
    """Writes silence as PCM 16-bit WAV (the telephony master when rate and channels default)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x00" * channels * round(seconds * rate))
    return path


class Recorder:
    """An `on_event` sink that keeps the events in the order they came."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self._seen: dict[CallEventKind, asyncio.Event] = {k: asyncio.Event() for k in K}

    async def __call__(self, event: CallEvent) -> None:
        self.events.append(event)
        self._seen[event.kind].set()

    async def wait_for(self, kind: CallEventKind) -> None:
        async with asyncio.timeout(5.0):
            await self._seen[kind].wait()

    @property
    def kinds(self) -> list[CallEventKind]:
        return [e.kind for e in self.events]

    def first(self, kind: CallEventKind) -> CallEvent:
        return next(e for e in self.events if e.kind is kind)


def kinds(*letters: str) -> list[CallEventKind]:
    """`kinds("SRAE")` for a compact expected sequence."""
    by_letter = {v: k for k, v in LETTERS.items()}
    return [by_letter[c] for c in "".join(letters)]


def assert_well_formed(
    events: Sequence[CallEvent], outcome: CallOutcome, request: CallRequest
) -> None:
    """The ordering rules of the port, whatever the outcome."""
    code = "".join(LETTERS[e.kind] for e in events)
    unheld = ON_HOLD_AT_THE_END.sub(lambda m: (m[2] or "") + "E", HOLDS.sub("", code))
    assert WELL_FORMED.fullmatch(unheld), code
    assert "H" not in code or -1 < code.find("P") < code.find("H"), "a hold comes after PLAYING"
    ended = events[-1]
    assert ended.outcome is outcome, "the outcome returned is the ENDED event's"
    assert all(e.call_id == request.call_id for e in events)
    assert all(e.at.utcoffset() == timedelta(0) for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert all((e.digit is not None) == (e.kind is K.DTMF) for e in events)
    assert ("C" in code) == (outcome is CallOutcome.CONFIRMED)
    if "C" in code:
        assert code[code.index("C") - 1] == "D"
        assert events[code.index("C") - 1].digit == request.confirm_digit
    if outcome in (CallOutcome.ANSWERED, CallOutcome.CONFIRMED):
        assert "A" in code
    if outcome in (CallOutcome.BUSY, CallOutcome.NO_ANSWER, CallOutcome.REJECTED):
        assert "A" not in code


class DialerContract:
    TIME_SCALE = 1.0
    RING_TIMEOUT_S = 5.0
    PARALLEL_CALLS = 200

    @pytest.fixture
    async def dialer(self) -> Any:
        raise NotImplementedError("an adapter's test class provides the dialer")

    @pytest.fixture
    def confirming_target(self) -> str:
        raise NotImplementedError("an adapter's test class names a member who confirms")

    @pytest.fixture
    def unanswered_target(self) -> str:
        raise NotImplementedError("an adapter's test class names a member who never answers")

    @pytest.fixture
    def announcement(self, tmp_path: Path) -> Path:
        return write_wav(tmp_path / "announcement.wav", 1.0)

    def request(self, target: str, announcement: Path, **fields: Any) -> CallRequest:
        fields.setdefault("call_id", uuid.uuid4().hex)
        fields.setdefault("ring_timeout_s", self.RING_TIMEOUT_S)
        return CallRequest(
            target=target, display_name="Rundruf", announcement=announcement, **fields
        )

    async def dial(self, dialer: Dialer, request: CallRequest) -> Recorder:
        recorder = Recorder()
        outcome = await dialer.call(request, recorder)
        assert_well_formed(recorder.events, outcome, request)
        return recorder

    async def test_a_member_who_confirms_gives_the_whole_sequence(
        self, dialer: Dialer, confirming_target: str, announcement: Path
    ) -> None:
        request = self.request(confirming_target, announcement)

        recorder = await self.dial(dialer, request)

        assert recorder.kinds == kinds("SRAPDCE")
        assert recorder.first(K.DTMF).digit == "1"
        assert recorder.events[-1].outcome is CallOutcome.CONFIRMED

    async def test_nobody_answering_ends_after_the_ring_timeout(
        self, dialer: Dialer, unanswered_target: str, announcement: Path
    ) -> None:
        request = self.request(unanswered_target, announcement)

        recorder = await self.dial(dialer, request)

        assert recorder.kinds == kinds("SRE")
        assert recorder.events[-1].outcome is CallOutcome.NO_ANSWER
        rang = recorder.events[-1].at - recorder.first(K.RINGING).at
        assert rang.total_seconds() >= 0.9 * self.RING_TIMEOUT_S * self.TIME_SCALE

    async def test_cancelling_a_call_hangs_up_with_failed_cancelled(
        self, dialer: Dialer, unanswered_target: str, announcement: Path
    ) -> None:
        request = self.request(unanswered_target, announcement, ring_timeout_s=3600.0)
        recorder = Recorder()
        task = asyncio.create_task(dialer.call(request, recorder))
        await recorder.wait_for(K.RINGING)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert recorder.kinds == kinds("SRE")
        ended = recorder.events[-1]
        assert (ended.outcome, ended.detail) == (CallOutcome.FAILED, "cancelled")
        # Hung up for real: the same call id can be placed again.
        again = self.request(unanswered_target, announcement, call_id=request.call_id)
        assert (await self.dial(dialer, again)).events[-1].outcome is CallOutcome.NO_ANSWER

    async def test_a_call_id_still_running_is_refused(
        self, dialer: Dialer, unanswered_target: str, announcement: Path
    ) -> None:
        request = self.request(unanswered_target, announcement, ring_timeout_s=3600.0)
        recorder = Recorder()
        task = asyncio.create_task(dialer.call(request, recorder))
        await recorder.wait_for(K.RINGING)

        with pytest.raises(DuplicateCall):
            await dialer.call(request, Recorder())

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert recorder.kinds.count(K.ENDED) == 1

    async def test_many_calls_run_side_by_side_in_one_loop(
        self, dialer: Dialer, confirming_target: str, announcement: Path
    ) -> None:
        started = time.perf_counter()
        await self.dial(dialer, self.request(confirming_target, announcement))
        one_call = time.perf_counter() - started
        order: list[CallEvent] = []
        threads: list[int] = []

        async def sink(event: CallEvent) -> None:
            order.append(event)
            threads.append(threading.active_count())

        requests = [
            self.request(confirming_target, announcement) for _ in range(self.PARALLEL_CALLS)
        ]
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(dialer.call(r, sink) for r in requests))
        wall = time.perf_counter() - started

        assert outcomes == [CallOutcome.CONFIRMED] * self.PARALLEL_CALLS
        # One after the other they would take PARALLEL_CALLS times as long.
        assert wall < 3 * one_call + 0.5, (wall, one_call)
        open_calls = peak = 0
        for event in order:
            open_calls += {K.STARTED: 1, K.ENDED: -1}.get(event.kind, 0)
            peak = max(peak, open_calls)
        assert peak == self.PARALLEL_CALLS
        # No thread per call: a few helpers at most, whatever the number of calls.
        assert max(threads) < 40
        for request in requests:
            events = [e for e in order if e.call_id == request.call_id]
            assert_well_formed(events, CallOutcome.CONFIRMED, request)

    async def test_a_missing_announcement_fails_the_call_without_raising(
        self, dialer: Dialer, confirming_target: str, tmp_path: Path
    ) -> None:
        missing = tmp_path / "gone.wav"

        recorder = await self.dial(dialer, self.request(confirming_target, missing))

        assert recorder.kinds == kinds("SE")
        ended = recorder.events[-1]
        assert ended.outcome is CallOutcome.FAILED
        assert ended.detail is not None and str(missing) in ended.detail

    @pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (8000, 2)])
    async def test_an_announcement_not_in_the_telephony_format_fails_the_call(
        self, dialer: Dialer, confirming_target: str, tmp_path: Path, rate: int, channels: int
    ) -> None:
        wrong = write_wav(tmp_path / "wrong.wav", 1.0, rate=rate, channels=channels)

        recorder = await self.dial(dialer, self.request(confirming_target, wrong))

        assert recorder.kinds == kinds("SE")
        assert recorder.events[-1].outcome is CallOutcome.FAILED

    async def test_closing_ends_running_calls_and_refuses_new_ones(
        self, dialer: Dialer, unanswered_target: str, announcement: Path
    ) -> None:
        request = self.request(unanswered_target, announcement, ring_timeout_s=3600.0)
        recorder = Recorder()
        task = asyncio.create_task(dialer.call(request, recorder))
        await recorder.wait_for(K.RINGING)

        await dialer.close()

        assert await task is CallOutcome.FAILED
        assert recorder.events[-1].detail == "dialer closed"
        assert_well_formed(recorder.events, CallOutcome.FAILED, request)
        with pytest.raises(DialerClosed):
            await dialer.call(self.request(unanswered_target, announcement), Recorder())
