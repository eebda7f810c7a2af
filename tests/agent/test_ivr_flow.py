"""The agent's own IVR (edge_agent/ivr/flow.py) over a scripted caller line.

The throttle and the notice outbox are the real ones in tmp_path, on a clock the
test moves: a wait is a call of the fake sleep, never real time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from edge_agent.broadcast.model import Mode
from edge_agent.errors import ServerUnreachable
from edge_agent.ivr import definition
from edge_agent.ivr.flow import Choice, Outcome, TriggerCall, has_message
from edge_agent.ivr.guard import AGENT_GAP_S, PinGuard
from edge_agent.ivr.notices import NoticeOutbox
from tests.agent.ivr_lines import GONE, During, ScriptedLine, prompt, speech

PIN = "4711"
AGENT = "7701"
_DELAYS = definition.DEFAULTS["throttle_delays"]
assert isinstance(_DELAYS, tuple)
DELAYS: tuple[int, ...] = _DELAYS


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # The flow takes what "bitte warten" took off the wait, on the loop's (real) clock:
        # microseconds here.
        seconds = round(seconds, 2)
        self.sleeps.append(seconds)
        self.now += seconds


class Starts:
    """Broadcasts.accept's stand-in: records each choice; can fail or wait for a go."""

    def __init__(self) -> None:
        self.choices: list[Choice] = []
        self.fail: Exception | None = None
        self.go: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.done = asyncio.Event()

    async def __call__(self, choice: Choice) -> object:
        self.entered.set()
        if self.go is not None:
            await self.go.wait()
        if self.fail is not None:
            raise self.fail
        self.choices.append(choice)
        self.done.set()
        return "broadcast-1"


class Bed:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.outbox = NoticeOutbox(tmp_path)
        self.guard = PinGuard(tmp_path, self.outbox, clock=self.clock.time)
        self.starts = Starts()

    def call(self, line: ScriptedLine) -> TriggerCall:
        return TriggerCall(
            line,
            agent_number=AGENT,
            pin=PIN,
            prompt=prompt,
            throttle=self.guard,
            start=self.starts,
            sleep=self.clock.sleep,
        )

    async def run(
        self, answers: Sequence[str | bytes | object], **line: Any
    ) -> tuple[Outcome, ScriptedLine]:
        scripted = ScriptedLine(answers, **line)
        return await self.call(scripted).run(), scripted


@pytest.fixture
def bed(tmp_path: Path) -> Bed:
    return Bed(tmp_path)


# -- PIN -----------------------------------------------------------------------------


async def test_right_pin_first_try_alarm(bed: Bed) -> None:
    outcome, line = await bed.run([PIN, "2", "1"])
    assert outcome is Outcome.TRIGGERED
    assert line.heard == ["pin", "menu", "confirm_alarm", "triggered"]
    assert bed.starts.choices == [Choice(Mode.ALARM)]
    assert line.hung_up
    # The PIN until #, at most 16 keys, 10 s per key; one key for the menu and confirmation.
    assert line.reads == [(16, 10.0, "#"), (1, 10.0, None), (1, 10.0, None)]
    assert bed.clock.sleeps == []


async def test_right_pin_third_try_after_a_wrong_and_an_empty_one(bed: Bed) -> None:
    outcome, line = await bed.run(["1111", "", PIN, "1", "1"])
    assert outcome is Outcome.TRIGGERED
    assert line.heard == [
        "pin",
        "pin_wrong",
        "wait",  # after the first wrong PIN: 2 s before the next try
        "pin",
        "invalid",  # nothing entered: uses a try, is no wrong PIN (no wait after it)
        "pin",
        "menu",
        "confirm_test",
        "triggered",
    ]
    assert bed.clock.sleeps == [DELAYS[1]]
    assert bed.starts.choices == [Choice(Mode.TEST)]


async def test_the_line_learns_of_the_right_pin_and_only_of_it(bed: Bed) -> None:
    # The SIP line's limits for callers before the PIN (how long, how many calls per
    # number) end with the right PIN: a caller who never enters it stays limited.
    _, wrong = await bed.run(["1", "2", "3"])
    assert wrong.authenticated_calls == 0
    _, right = await bed.run(["1111", PIN, "*"], call_id="call-2")
    assert right.authenticated_calls == 1


async def test_three_wrong_pins_end_the_call_and_are_counted(bed: Bed) -> None:
    outcome, line = await bed.run(["1", "2", "3"])
    assert outcome is Outcome.WRONG_PIN
    assert line.heard[-2:] == ["pin_wrong", "goodbye"]
    assert line.heard.count("pin_wrong") == 3
    assert line.hung_up
    assert bed.starts.choices == []
    # The delay grows within the call: 2 s after the first, 5 s after the second.
    assert bed.clock.sleeps == [DELAYS[1], DELAYS[2]]
    # ... and across calls: the next call from that number waits 10 s before its first try.
    _, again = await bed.run([PIN, "*"])
    assert again.heard[:2] == ["wait", "pin"]
    assert bed.clock.sleeps[-1] == DELAYS[3]


async def test_another_caller_is_not_delayed(bed: Bed) -> None:
    await bed.run(["1", "2", "3"], caller="+4930666")
    sleeps = list(bed.clock.sleeps)
    outcome, line = await bed.run([PIN, "2", "1"], caller="+4930111", call_id="call-2")
    assert outcome is Outcome.TRIGGERED
    assert line.heard[0] == "pin"
    assert bed.clock.sleeps == sleeps


async def test_right_pin_clears_the_count(bed: Bed) -> None:
    await bed.run(["1", PIN, "*"])
    assert bed.clock.sleeps == [DELAYS[1]]
    bed.clock.now += 60
    await bed.run(["9", "8"])  # wrong again: counted from 1, not from 2
    assert bed.clock.sleeps[1:] == [DELAYS[1], DELAYS[2]]


async def test_ten_wrong_pins_in_ten_minutes_make_one_notice_and_never_a_lock(bed: Bed) -> None:
    callers = [f"+49301{n:02d}" for n in range(11)]
    for n, caller in enumerate(callers[:10]):
        await bed.run(["0000"], caller=caller, call_id=f"c{n}")  # hangs up after one try
        bed.clock.now += 30
    pending = bed.outbox.pending()
    assert len(pending) == 1
    notice = pending[0][1]
    assert notice["kind"] == "wrongPins"
    assert notice["agentNumber"] == AGENT
    assert notice["callerNumber"] == callers[9]  # whose PIN was the tenth
    assert notice["count"] == 10
    assert notice["noticeId"].startswith("ivr-")
    assert notice["at"]
    # The eleventh within the window makes none; the group is not locked for anyone.
    await bed.run(["0000"], caller=callers[10], call_id="c10")
    assert len(bed.outbox.pending()) == 1
    outcome, line = await bed.run([PIN, "2", "1"], caller="+4930999", call_id="c11")
    assert outcome is Outcome.TRIGGERED
    # Under attack now: the try comes at most a gap after the eleventh's, handed out at once.
    assert line.heard[0] == "pin" or (
        line.heard[:2] == ["wait", "pin"] and bed.clock.sleeps[-1] <= AGENT_GAP_S
    )


async def claims_at_once(guard: PinGuard, callers: Sequence[str]) -> list[float]:
    """The waits of calls that ask for their first try all at the same moment, in order."""
    return sorted(await asyncio.gather(*(guard.wait(AGENT, c) for c in callers)))


async def test_parallel_calls_from_one_number_queue_behind_each_other(bed: Bed) -> None:
    # 20 calls at once from one number got 20 tries at once; each claimed try now counts
    # as a wrong PIN until its call says how it went, so they wait 0, 2, 7, 17, ... s.
    waits = await claims_at_once(bed.guard, ["+4930111"] * 20)
    assert waits[0] == 0
    for n in range(1, 20):
        assert waits[n] - waits[n - 1] >= DELAYS[min(n, len(DELAYS) - 1)]
    # Settled without a PIN (hung up, or nothing entered): the claims are freed.
    for _ in range(20):
        await bed.guard.unused(AGENT, "+4930111")
    assert await bed.guard.wait(AGENT, "+4930111") == 0


async def test_under_attack_tries_from_anyone_are_a_gap_apart_never_locked(bed: Bed) -> None:
    for n in range(10):  # the notice threshold, from ten numbers
        await bed.run(["0000"], caller=f"+49301{n:02d}", call_id=f"c{n}")
    bed.clock.now += 60
    # Rotating numbers at once: before, every one got its try at once (wait 0).
    waits = await claims_at_once(bed.guard, [f"+49302{n:02d}" for n in range(20)])
    assert all(b - a >= AGENT_GAP_S for a, b in itertools.pairwise(waits))
    # Never a lock: the right PIN's turn comes after the tries claimed before it.
    assert await bed.guard.wait(AGENT, "+4930999") <= 21 * AGENT_GAP_S
    await bed.guard.unused(AGENT, "+4930999")
    # The callers hang up: their turns are freed, the right PIN waits at most one gap.
    for n in range(20):
        await bed.guard.unused(AGENT, f"+49302{n:02d}")
    outcome, line = await bed.run([PIN, "2", "1"], caller="+4930999", call_id="ok")
    assert outcome is Outcome.TRIGGERED
    assert "wait" not in line.heard or bed.clock.sleeps[-1] <= AGENT_GAP_S
    # Out of the window (ten minutes on) the gap is gone.
    bed.clock.now += 600
    assert await claims_at_once(bed.guard, ["+4930301", "+4930302"]) == [0, 0]


async def test_throttle_survives_a_restart(tmp_path: Path) -> None:
    first = Bed(tmp_path)
    await first.run(["1", "2", "3"])
    second = Bed(tmp_path)  # a new process on the same state_dir
    second.clock.now = first.clock.now
    _, line = await second.run([PIN, "*"])
    assert line.heard[:2] == ["wait", "pin"]
    assert second.clock.sleeps == [DELAYS[3]]


async def test_a_throttle_file_that_cannot_be_used_does_not_stop_the_alarm(
    bed: Bed, tmp_path: Path
) -> None:
    (tmp_path / "ivr").write_text("not a folder")  # the throttle's folder cannot be made
    outcome, line = await bed.run(["1", PIN, "2", "1"])
    assert outcome is Outcome.TRIGGERED
    assert "wait" not in line.heard


# -- menu and confirmation -----------------------------------------------------------


async def test_invalid_menu_keys_and_silence_ask_again(bed: Bed) -> None:
    outcome, line = await bed.run([PIN, "5", "", "#", "2", "1"])
    assert outcome is Outcome.TRIGGERED
    assert line.heard == [
        "pin",
        *["menu", "invalid"] * 3,
        "menu",
        "confirm_alarm",
        "triggered",
    ]


async def test_cancel(bed: Bed) -> None:
    outcome, line = await bed.run([PIN, "*"])
    assert outcome is Outcome.CANCELLED
    assert line.heard == ["pin", "menu", "cancelled"]
    assert bed.starts.choices == []
    assert line.hung_up


async def test_menu_exhausted_after_five_rounds(bed: Bed) -> None:
    outcome, line = await bed.run([PIN, "9", "9", "9", "9", "9", "2", "1"])
    assert outcome is Outcome.MENU_EXHAUSTED
    assert line.heard == ["pin", *["menu", "invalid"] * 5, "goodbye"]
    assert bed.starts.choices == []


async def test_another_key_at_the_confirmation_goes_back_to_the_menu(bed: Bed) -> None:
    outcome, line = await bed.run([PIN, "2", "9", "1", "", "1", "1"])
    assert outcome is Outcome.TRIGGERED
    assert line.heard == [
        "pin",
        "menu",
        "confirm_alarm",
        "menu",
        "confirm_test",  # silence at the confirmation: back to the menu too
        "menu",
        "confirm_test",
        "triggered",
    ]
    assert bed.starts.choices == [Choice(Mode.TEST)]


async def test_questions_forget_old_keys_and_prompts_are_not_answers(bed: Bed) -> None:
    _, line = await bed.run(["1", PIN, "2", "1"])
    # Each question (PIN x2, menu, confirmation) clears the keys before its prompt.
    assert line.cleared == 4
    heard = dict(zip(line.heard, line.barge_in, strict=True))
    assert heard["pin"] and heard["menu"] and heard["confirm_alarm"]
    assert not heard["pin_wrong"] and not heard["wait"] and not heard["triggered"]


# -- mode 3 --------------------------------------------------------------------------


async def test_record_play_back_and_send(bed: Bed) -> None:
    message = speech(1.5)
    outcome, line = await bed.run([PIN, "3", message, "1"])
    assert outcome is Outcome.TRIGGERED
    assert line.heard == [
        "pin",
        "menu",
        "record",
        "tone",
        "playback",
        "record_check",
        "triggered",
    ]
    # Up to 60 s, 2 s of silence after speech, 5 s without any speech since the tone.
    assert line.records == [(60.0, 2.0, "#", 5.0)]
    assert bed.starts.choices == [Choice(Mode.ALARM_RECORDED, message)]


async def test_record_again_sends_the_last_take(bed: Bed) -> None:
    first, second = speech(1.0), speech(2.0)
    outcome, line = await bed.run([PIN, "3", first, "2", second, "1"])
    assert outcome is Outcome.TRIGGERED
    assert line.heard.count("record") == 2
    assert line.heard.count("playback") == 2
    assert bed.starts.choices == [Choice(Mode.ALARM_RECORDED, second)]


async def test_an_empty_or_silent_recording_is_recorded_again(bed: Bed) -> None:
    silent = bytes(8000 * 2 * 3)  # 3 s of silence
    outcome, line = await bed.run([PIN, "3", b"", silent, speech(), "1"])
    assert outcome is Outcome.TRIGGERED
    assert line.heard == [
        "pin",
        "menu",
        *["record", "tone", "record_failed"] * 2,
        "record",
        "tone",
        "playback",
        "record_check",
        "triggered",
    ]


async def test_three_takes_then_back_to_the_menu(bed: Bed) -> None:
    takes = [speech(), "2"] * 3
    outcome, line = await bed.run([PIN, "3", *takes, "*"])
    assert outcome is Outcome.CANCELLED
    assert line.heard[-2:] == ["menu", "cancelled"]
    assert line.heard.count("record") == 3
    assert bed.starts.choices == []


async def test_another_key_after_the_playback_goes_back_to_the_menu(bed: Bed) -> None:
    outcome, line = await bed.run([PIN, "3", speech(), "5", "2", "1"])
    assert outcome is Outcome.TRIGGERED
    assert line.heard[-4:] == ["record_check", "menu", "confirm_alarm", "triggered"]
    assert bed.starts.choices == [Choice(Mode.ALARM)]


async def test_the_silence_before_the_message_is_cut_to_a_fifth_of_a_second(bed: Bed) -> None:
    # The caller starts speaking 2 s after the tone: members used to hear those 2 s first.
    message = speech(1.0)
    lead_in = int(0.2 * definition.SAMPLE_RATE) * definition.SAMPLE_WIDTH
    quiet = bytes(2 * definition.SAMPLE_RATE * definition.SAMPLE_WIDTH)
    outcome, _ = await bed.run([PIN, "3", quiet + message, "1"])
    assert outcome is Outcome.TRIGGERED
    assert bed.starts.choices == [Choice(Mode.ALARM_RECORDED, bytes(lead_in) + message)]


async def test_a_key_during_the_playback_is_taken_without_the_check_prompt(bed: Bed) -> None:
    # The caller knows the choice: 1 pressed while their message plays back sends it.
    message = speech(1.5)
    outcome, line = await bed.run([PIN, "3", message, During("1")])
    assert outcome is Outcome.TRIGGERED
    assert line.heard[-3:] == ["tone", "playback", "triggered"]
    assert "record_check" not in line.heard
    assert bed.starts.choices == [Choice(Mode.ALARM_RECORDED, message)]
    # 2 during the playback records again at once.
    second = speech(2.0)
    outcome, line = await bed.run([PIN, "3", message, During("2"), second, "1"], call_id="c2")
    assert outcome is Outcome.TRIGGERED
    assert line.heard.count("record_check") == 1  # only after the second take's playback
    assert bed.starts.choices[-1] == Choice(Mode.ALARM_RECORDED, second)


# -- hanging up ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "answers",
    [
        [],  # at the PIN
        ["1", GONE],  # at the second PIN try
        [PIN],  # at the menu
        [PIN, "2"],  # at the confirmation
        [PIN, "3"],  # while recording
        [PIN, "3", speech()],  # at the check after the playback
        [PIN, "3", speech(), "2"],  # at the second take
    ],
)
async def test_hanging_up_at_a_question_triggers_nothing(
    bed: Bed, answers: list[str | bytes | object]
) -> None:
    outcome, line = await bed.run(answers)
    assert outcome is Outcome.HANGUP
    assert bed.starts.choices == [] and not bed.starts.entered.is_set()
    assert line.hung_up


@pytest.mark.parametrize(
    "gone_at",
    ["pin", "pin_wrong", "wait", "menu", "invalid", "confirm_alarm", "record", "tone", "playback"],
)
async def test_hanging_up_during_a_prompt_triggers_nothing(bed: Bed, gone_at: str) -> None:
    # A wrong PIN before, then gone at "wait": the second call hears "wait" too.
    await bed.run(["1"], gone_at_prompt="wait")
    outcome, _ = await bed.run(
        [PIN, "5", "2", "9", "3", speech(), "1"], gone_at_prompt=gone_at, call_id="c2"
    )
    if gone_at == "pin_wrong":  # this script has no wrong PIN: it triggers
        assert outcome is Outcome.TRIGGERED
        return
    assert outcome is Outcome.HANGUP
    assert bed.starts.choices == []


async def test_hanging_up_during_triggered_keeps_the_broadcast(bed: Bed) -> None:
    outcome, _ = await bed.run([PIN, "2", "1"], gone_at_prompt="triggered")
    assert outcome is Outcome.TRIGGERED
    assert bed.starts.choices == [Choice(Mode.ALARM)]


# -- the trigger ---------------------------------------------------------------------


async def test_accept_failing_says_failed(bed: Bed) -> None:
    bed.starts.fail = OSError("disk full")
    outcome, line = await bed.run([PIN, "2", "1"])
    assert outcome is Outcome.TRIGGER_FAILED
    assert line.heard[-1] == "failed"
    assert "triggered" not in line.heard
    assert line.hung_up


async def test_triggered_only_after_accept_returned(bed: Bed) -> None:
    bed.starts.go = asyncio.Event()
    line = ScriptedLine([PIN, "2", "1"])
    call = asyncio.create_task(bed.call(line).run())
    await bed.starts.entered.wait()
    for _ in range(20):  # let the call go on as far as it would
        await asyncio.sleep(0)
    assert "triggered" not in line.heard and not line.hung_up
    assert not call.done()
    bed.starts.go.set()
    assert await call is Outcome.TRIGGERED
    assert line.heard[-1] == "triggered"


async def test_a_call_cancelled_during_accept_still_journals(bed: Bed) -> None:
    bed.starts.go = asyncio.Event()
    line = ScriptedLine([PIN, "2", "1"])
    call = asyncio.create_task(bed.call(line).run())
    await bed.starts.entered.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    bed.starts.go.set()
    await bed.starts.done.wait()
    assert bed.starts.choices == [Choice(Mode.ALARM)]


# -- notices out ---------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.down = False
        self.got: list[dict[str, Any]] = []

    async def report_notice(self, notice: dict[str, Any]) -> bool:
        if self.down:
            raise ServerUnreachable("server down")
        self.got.append(notice)
        return True


async def test_notices_wait_on_disk_while_the_server_is_away(bed: Bed, tmp_path: Path) -> None:
    for n in range(10):
        await bed.run(["0000"], caller=f"+49{n}", call_id=f"c{n}")
    sink = Sink()
    sink.down = True
    assert await bed.outbox.send(sink) == 0
    # A restart in between: the notice is still there, and goes out once.
    outbox = NoticeOutbox(tmp_path)
    sink.down = False
    assert await outbox.send(sink) == 1
    assert await outbox.send(sink) == 0
    assert [n["count"] for n in sink.got] == [10]
    assert json.dumps(sink.got[0])  # plain JSON, as reportNotice takes it


def test_what_counts_as_a_message() -> None:
    assert has_message(speech(0.5, level=328))  # -40 dBFS: speech to the SIP recorder
    assert not has_message(speech(0.5, level=327))
    assert not has_message(speech(0.49))  # too short
    assert not has_message(b"")


async def test_a_hang_up_during_the_wait_ends_the_call_at_once(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    await bed.run(["1"], gone_at_prompt="wait")
    line = ScriptedLine([GONE, PIN, "2", "1"], call_id="c2")
    # The wait on the line itself (no sleep given): the caller's hang-up ends it.
    call = TriggerCall(
        line, agent_number=AGENT, pin=PIN, prompt=prompt, throttle=bed.guard, start=bed.starts
    )
    assert await call.run() is Outcome.HANGUP
    assert line.heard == ["wait"]
    [(max_digits, wait_s, end)] = line.reads  # the wait was one listen on the line
    assert (max_digits, end) == (1, None) and 0 < wait_s <= DELAYS[1]
    assert bed.starts.choices == []


class KeysDuringTheWait(ScriptedLine):
    """Presses a key every `every` seconds while "bitte warten" and the wait run, reading
    keys as the SIP line does: a read ends after its keys, or `wait_s` after the last key."""

    def __init__(self, answers: Sequence[str | bytes | object], every: float) -> None:
        super().__init__(answers)
        self.every = every
        self.pressing = True
        self.pressed = 0

    async def play(self, pcm: bytes, *, barge_in: bool = True) -> None:
        await super().play(pcm, barge_in=barge_in)
        self.pressing = self.heard[-1] == "wait"

    async def read_digits(self, max_digits: int, wait_s: float, end: str | None) -> str:
        if not self.pressing:
            return await super().read_digits(max_digits, wait_s, end)
        got = ""
        while len(got) < max_digits:
            if self.every > wait_s:  # no key within the read's time: it ends
                await asyncio.sleep(wait_s)
                break
            await asyncio.sleep(self.every)
            got += "5"
            self.pressed += 1
        return got


class FixedWait:
    """A throttle that makes every try wait `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until = 0.0

    async def wait(self, agent_number: str, caller: str) -> float:
        self.until = asyncio.get_running_loop().time() + self.seconds
        return self.seconds

    async def left(self, agent_number: str, caller: str) -> float:
        return max(0.0, self.until - asyncio.get_running_loop().time())

    async def right(self, agent_number: str, caller: str) -> None:
        pass

    async def wrong(self, agent_number: str, caller: str) -> bool:
        return False

    async def unused(self, agent_number: str, caller: str) -> None:
        pass


async def test_keys_during_the_wait_do_not_make_it_longer(bed: Bed) -> None:
    # A key every 0.2 s during a 0.3 s wait: the wait ends after the one key that fits
    # in it (each key used to start the read's time over: 16 keys, 3.2 s).
    wait, every = 0.3, 0.2
    line = KeysDuringTheWait([GONE], every)
    call = TriggerCall(
        line, agent_number=AGENT, pin=PIN, prompt=prompt, throttle=FixedWait(wait), start=bed.starts
    )
    assert await call.run() is Outcome.HANGUP
    assert line.heard == ["wait", "pin"]  # the wait, then the PIN was asked
    assert line.pressed * every <= wait


async def test_under_attack_calls_that_come_and_go_do_not_push_the_right_pin_away(bed: Bed) -> None:
    # Review 2 of issue 16, finding 1: an attacker calling once a second from 3 numbers,
    # each call hung up after 2 s, pushed the queue 5 s ahead per call while the clock
    # moved 1 s; a real caller was told to wait 393 s and cut off before the PIN prompt.
    for n in range(10):  # the notice threshold: under attack
        await bed.run(["0000"], caller=f"+49301{n:02d}", call_id=f"c{n}")
    calls: list[str] = []
    for k in range(120):  # two minutes of attacker calls
        calls.append(f"+49302{k % 3:02d}")
        await bed.guard.wait(AGENT, calls[-1])
        if len(calls) > 2:
            await bed.guard.unused(AGENT, calls.pop(0))  # hung up before its try
        bed.clock.now += 1
    # The real caller waits at most a gap per call still waiting ahead of it (2), plus one.
    real = "+4930999"
    wait = await bed.guard.wait(AGENT, real)
    assert wait <= 3 * AGENT_GAP_S
    start = bed.clock.now
    while (left := await bed.guard.left(AGENT, real)) > 0:
        bed.clock.now += 1
        calls.append(f"+49302{len(calls) % 3:02d}")  # the attack goes on meanwhile
        await bed.guard.wait(AGENT, calls[-1])
        await bed.guard.unused(AGENT, calls.pop(0))
        assert bed.clock.now - start <= 3 * AGENT_GAP_S, left
    # Still one try per gap from anyone: the attacker's calls waiting now wait their turn.
    assert await bed.guard.wait(AGENT, "+4930555") >= AGENT_GAP_S


async def test_the_ivrs_waits_do_not_count_against_the_pin_stage(bed: Bed) -> None:
    # Review 2 of issue 16, finding 1: the throttle's waits ran down the line's 180 s PIN
    # stage. The line is told each wait, and pushes its limit back as far (incoming.py).
    outcome, line = await bed.run(["1", "2", PIN, "2", "1"])
    assert outcome is Outcome.TRIGGERED
    assert bed.clock.sleeps == [DELAYS[1], DELAYS[2]]
    assert line.stage_extended == sum(bed.clock.sleeps)
