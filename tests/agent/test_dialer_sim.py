"""The simulated dialer: the `Dialer` contract, then the simulator's behaviour table.

Members live in a real SwyxWare simulator state file; scripts go through
`SimDialerControl`, once from another process as the demo does it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.dialer.port import (
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallRequest,
)
from edge_agent.dialer.sim import (
    Behaviour,
    SimDialer,
    SimDialerControl,
    SimScriptDamaged,
    plan_call,
    script_path,
)
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimControl
from tests.agent.dialer_contract import (
    DialerContract,
    Recorder,
    assert_well_formed,
    kinds,
    write_wav,
)

K = CallEventKind
SCALE = 0.01  # 1 s of simulated time is 10 ms here
ANNA = "201"  # logged on, answers and confirms
# One member per state, on 300 + the state's number.
EXT = {state: str(300 + state.value) for state in UserState}
BUSY_STATES = (
    UserState.SPEAKING_EXTERNAL,
    UserState.ALERTING,
    UserState.SPEAKING_INTERNAL,
    UserState.BUSY,
)

Dial = Callable[..., Awaitable[Recorder]]


@pytest.fixture
def control(tmp_path: Path) -> SimControl:
    control = SimControl(tmp_path / "swyx.json")
    control.create()
    control.add_user("Anna Berger", ANNA, UserState.LOGGED_ON)
    for state, extension in EXT.items():
        control.add_user(f"Member {state.name}", extension, state)
    return control


@pytest.fixture
def script(control: SimControl) -> SimDialerControl:
    return SimDialerControl(control.state_path)


@pytest.fixture
def announcement(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "announcement.wav", 1.0)


@pytest.fixture
async def sim(control: SimControl) -> AsyncIterator[SimDialer]:
    dialer = SimDialer(control.state_path, time_scale=SCALE)
    yield dialer
    await dialer.close()


@pytest.fixture
def dial(sim: SimDialer, announcement: Path) -> Dial:
    """Calls `target` to the end and returns its well-formed events."""

    async def dial(target: str, **fields: Any) -> Recorder:
        fields.setdefault("announcement", announcement)
        fields.setdefault("ring_timeout_s", 5.0)
        request = CallRequest(
            call_id=fields.pop("call_id", f"call-{target}"),
            target=target,
            display_name="Rundruf",
            **fields,
        )
        recorder = Recorder()
        outcome = await sim.call(request, recorder)
        assert_well_formed(recorder.events, outcome, request)
        return recorder

    return dial


def ended(recorder: Recorder) -> tuple[CallOutcome | None, str | None]:
    event = recorder.events[-1]
    return event.outcome, event.detail


def seconds_between(a: CallEvent, b: CallEvent) -> float:
    return (b.at - a.at).total_seconds()


class TestSimDialerContract(DialerContract):
    TIME_SCALE = 0.05

    @pytest.fixture
    async def dialer(self, control: SimControl) -> AsyncIterator[SimDialer]:
        dialer = SimDialer(control.state_path, time_scale=self.TIME_SCALE)
        yield dialer
        await dialer.close()

    @pytest.fixture
    def confirming_target(self, script: SimDialerControl) -> str:
        # A fixed answer delay, so one call's time stands for each of the parallel ones.
        script.script(ANNA, Behaviour.CONFIRM, after_s=2.0)
        return ANNA

    @pytest.fixture
    def unanswered_target(self) -> str:
        return EXT[UserState.LOGGED_OFF]


# --- the port's value types ---------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"repetitions": 0},
        {"ring_timeout_s": 0},
        {"dtmf_timeout_s": -1},
        {"max_repeats": -1},
        {"confirm_digit": "x"},
        {"repeat_digit": "12"},
        {"confirm_digit": "9", "repeat_digit": "9"},
        {"call_id": ""},
    ],
)
def test_a_request_out_of_range_is_a_programming_error(fields: dict[str, Any]) -> None:
    values: dict[str, Any] = {"call_id": "c1", "target": ANNA, "display_name": "x"}
    with pytest.raises(ValueError):
        CallRequest(announcement=Path("a.wav"), **(values | fields))


def test_an_outcome_belongs_on_ended_only() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValueError):
        CallEvent("c1", K.RINGING, now, outcome=CallOutcome.BUSY)
    with pytest.raises(ValueError):
        CallEvent("c1", K.ENDED, now)
    with pytest.raises(ValueError):
        CallEvent("c1", K.DTMF, now)
    with pytest.raises(ValueError):
        CallEvent("c1", K.STARTED, datetime.now())  # naive on purpose


def test_outcomes_use_the_central_services_names() -> None:
    assert [o.value for o in CallOutcome] == [
        "confirmed",
        "answered",
        "busy",
        "no_answer",
        "rejected",
        "failed",
    ]


# --- behaviour from the member's state -------------------------------------------


@pytest.mark.parametrize(
    ("state", "outcome", "sequence", "detail"),
    [
        (UserState.LOGGED_ON, CallOutcome.CONFIRMED, "SRAPDCE", None),
        *[(s, CallOutcome.BUSY, "SE", f"busy ({s.name.lower()})") for s in BUSY_STATES],
        (UserState.DO_NOT_DISTURB, CallOutcome.REJECTED, "SE", "do not disturb"),
        (UserState.AWAY, CallOutcome.NO_ANSWER, "SRE", "no answer within 5 s"),
        (UserState.LOGGED_OFF, CallOutcome.NO_ANSWER, "SRE", "no answer within 5 s"),
        (UserState.UNAVAILABLE, CallOutcome.FAILED, "SE", "not registered"),
    ],
)
async def test_a_test_call_goes_as_the_members_state_says(
    dial: Dial, state: UserState, outcome: CallOutcome, sequence: str, detail: str | None
) -> None:
    recorder = await dial(EXT[state])

    assert recorder.kinds == kinds(sequence)
    assert ended(recorder) == (outcome, detail)


@pytest.mark.parametrize("state", BUSY_STATES)
async def test_an_alarm_interrupts_a_member_in_a_call(dial: Dial, state: UserState) -> None:
    recorder = await dial(EXT[state], priority=True)

    assert recorder.kinds == kinds("SRAPDCE")
    assert recorder.first(K.ANSWERED).detail == "intruded into a running call"
    assert ended(recorder)[0] is CallOutcome.CONFIRMED


async def test_an_alarm_is_auto_answered_despite_do_not_disturb(dial: Dial) -> None:
    recorder = await dial(EXT[UserState.DO_NOT_DISTURB], priority=True)

    assert recorder.first(K.ANSWERED).detail == "auto-answered despite do-not-disturb"
    assert ended(recorder)[0] is CallOutcome.CONFIRMED


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        (UserState.AWAY, CallOutcome.NO_ANSWER),
        (UserState.LOGGED_OFF, CallOutcome.NO_ANSWER),
        (UserState.UNAVAILABLE, CallOutcome.FAILED),
    ],
)
async def test_an_alarm_cannot_reach_who_is_not_there(
    dial: Dial, state: UserState, outcome: CallOutcome
) -> None:
    assert ended(await dial(EXT[state], priority=True))[0] is outcome


async def test_the_state_is_read_at_each_call(dial: Dial, control: SimControl) -> None:
    control.set_state("Anna Berger", UserState.BUSY)

    assert ended(await dial(ANNA))[0] is CallOutcome.BUSY


async def test_an_unknown_extension_fails(dial: Dial) -> None:
    assert ended(await dial("999")) == (CallOutcome.FAILED, "the extension 999 does not exist")


async def test_calls_fail_while_the_pbx_is_unreachable(dial: Dial, control: SimControl) -> None:
    control.set_fault(unreachable=True)

    assert ended(await dial(ANNA)) == (CallOutcome.FAILED, "the PBX is not reachable")


async def test_calls_fail_without_a_pbx(tmp_path: Path, announcement: Path) -> None:
    dialer = SimDialer(tmp_path / "none.json", time_scale=SCALE)
    request = CallRequest("c1", ANNA, "Rundruf", announcement)
    recorder = Recorder()

    outcome = await dialer.call(request, recorder)

    assert (outcome, recorder.events[-1].detail) == (CallOutcome.FAILED, "the PBX is not reachable")
    await dialer.close()


# --- behaviour from scripts ------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "outcome", "sequence", "detail"),
    [
        (Behaviour.ANSWER, CallOutcome.ANSWERED, "SRAPE", "hung up without confirming"),
        (Behaviour.CONFIRM, CallOutcome.CONFIRMED, "SRAPDCE", None),
        (Behaviour.REPEAT_THEN_CONFIRM, CallOutcome.CONFIRMED, "SRAPDPDCE", None),
        (Behaviour.VOICEMAIL, CallOutcome.ANSWERED, "SRAPE", "no confirmation within 8 s"),
        (Behaviour.BUSY, CallOutcome.BUSY, "SE", "busy"),
        (Behaviour.NO_ANSWER, CallOutcome.NO_ANSWER, "SRE", "no answer within 5 s"),
        (Behaviour.REJECT, CallOutcome.REJECTED, "SRE", "declined"),
        (Behaviour.FAIL, CallOutcome.FAILED, "SE", "simulated failure"),
    ],
)
async def test_a_scripted_member_does_what_the_script_says(
    dial: Dial,
    script: SimDialerControl,
    behaviour: Behaviour,
    outcome: CallOutcome,
    sequence: str,
    detail: str | None,
) -> None:
    script.script(ANNA, behaviour)

    recorder = await dial(ANNA)

    assert recorder.kinds == kinds(sequence)
    assert ended(recorder) == (outcome, detail)


async def test_a_script_wins_over_the_state(dial: Dial, script: SimDialerControl) -> None:
    script.script(EXT[UserState.LOGGED_OFF], "confirm")
    script.script(EXT[UserState.BUSY], Behaviour.BUSY)

    assert ended(await dial(EXT[UserState.LOGGED_OFF]))[0] is CallOutcome.CONFIRMED
    # A scripted busy line is what the test asked for, alarm or not.
    assert ended(await dial(EXT[UserState.BUSY], priority=True))[0] is CallOutcome.BUSY


async def test_repeat_then_confirm_sends_9_then_1_and_hears_it_twice(
    dial: Dial, script: SimDialerControl
) -> None:
    script.script(ANNA, Behaviour.REPEAT_THEN_CONFIRM)

    recorder = await dial(ANNA, repetitions=2)

    assert [e.digit for e in recorder.events if e.kind is K.DTMF] == ["9", "1"]
    plays = [e.detail for e in recorder.events if e.kind is K.PLAYING]
    assert plays == ["round 1, 2x", "round 2, 2x"]


async def test_the_repeat_digit_plays_nothing_past_max_repeats(
    dial: Dial, script: SimDialerControl
) -> None:
    script.script(ANNA, Behaviour.REPEAT_THEN_CONFIRM)

    recorder = await dial(ANNA, max_repeats=0)

    assert recorder.kinds == kinds("SRAPDDCE")


async def test_voicemail_is_answered_but_never_confirmed(
    dial: Dial, script: SimDialerControl
) -> None:
    script.script(ANNA, Behaviour.VOICEMAIL)

    recorder = await dial(ANNA, dtmf_timeout_s=4.0)

    assert ended(recorder) == (CallOutcome.ANSWERED, "no confirmation within 4 s")
    assert recorder.first(K.ANSWERED).detail == "voicemail"
    assert K.DTMF not in recorder.kinds


async def test_a_failure_script_gives_its_reason(dial: Dial, script: SimDialerControl) -> None:
    script.script(ANNA, Behaviour.FAIL, detail="SIP 503 Service Unavailable")

    assert ended(await dial(ANNA)) == (CallOutcome.FAILED, "SIP 503 Service Unavailable")


async def test_answering_after_the_ring_timeout_is_no_answer(
    dial: Dial, script: SimDialerControl
) -> None:
    script.script(ANNA, Behaviour.ANSWER, after_s=6.0)

    recorder = await dial(ANNA, ring_timeout_s=5.0)

    assert ended(recorder) == (CallOutcome.NO_ANSWER, "no answer within 5 s")


async def test_declining_after_the_ring_timeout_is_no_answer(
    dial: Dial, script: SimDialerControl
) -> None:
    script.script(ANNA, Behaviour.REJECT, after_s=5.0)

    assert ended(await dial(ANNA, ring_timeout_s=5.0))[0] is CallOutcome.NO_ANSWER


async def test_clearing_a_script_lets_the_state_rule_again(
    dial: Dial, script: SimDialerControl
) -> None:
    script.script(ANNA, Behaviour.BUSY)
    script.script(EXT[UserState.LOGGED_ON], Behaviour.BUSY)

    script.clear(ANNA)
    assert ended(await dial(ANNA))[0] is CallOutcome.CONFIRMED
    assert set(script.overrides()) == {EXT[UserState.LOGGED_ON]}
    script.clear()
    assert script.overrides() == {}


def test_the_control_refuses_nonsense(script: SimDialerControl) -> None:
    with pytest.raises(ValueError):
        script.script(ANNA, "dance")
    with pytest.raises(ValueError):
        script.script(ANNA, Behaviour.ANSWER, after_s=-1.0)
    with pytest.raises(ValueError):
        script.script("", Behaviour.BUSY)
    assert script.overrides() == {}


def test_the_script_lives_beside_the_state_as_whole_json(
    control: SimControl, script: SimDialerControl
) -> None:
    script.script(ANNA, Behaviour.ANSWER, after_s=2.5)

    assert script.path == script_path(control.state_path)
    assert script.path.name == "swyx.json.dialer.json"
    data = json.loads(script.path.read_text(encoding="utf-8"))
    assert data["extensions"] == {ANNA: {"behaviour": "answer", "after_s": 2.5, "detail": None}}
    # Written by replacing, so no temporary file is left behind.
    assert sorted(p.name for p in script.path.parent.glob(".swyx.json.dialer.json*")) == []


async def test_a_damaged_script_fails_calls_without_raising(
    dial: Dial, script: SimDialerControl
) -> None:
    script.path.write_text("{not json", encoding="utf-8")

    outcome, detail = ended(await dial(ANNA))

    assert outcome is CallOutcome.FAILED
    assert detail is not None and "cannot be read" in detail
    with pytest.raises(SimScriptDamaged):
        script.overrides()


async def test_another_process_scripts_the_dialer(dial: Dial, control: SimControl) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from edge_agent.dialer.sim import SimDialerControl\n"
        "SimDialerControl(Path(sys.argv[1])).script(sys.argv[2], 'reject', after_s=0.5)\n"
    )
    subprocess.run(  # noqa: ASYNC221 - a short child process, as the demo runs it
        [sys.executable, "-c", code, str(control.state_path), ANNA], check=True
    )

    assert ended(await dial(ANNA)) == (CallOutcome.REJECTED, "declined")


# --- time ------------------------------------------------------------------------


async def test_time_scale_makes_a_10_s_announcement_take_a_tenth_of_a_second(
    dial: Dial, script: SimDialerControl, tmp_path: Path
) -> None:
    ten_seconds = write_wav(tmp_path / "ten.wav", 10.0)
    script.script(ANNA, Behaviour.ANSWER)  # hangs up right after the round

    once = await dial(ANNA, announcement=ten_seconds, call_id="once")
    thrice = await dial(ANNA, announcement=ten_seconds, repetitions=3, call_id="thrice")

    assert 0.1 <= seconds_between(once.first(K.PLAYING), once.events[-1]) < 0.2
    assert 0.3 <= seconds_between(thrice.first(K.PLAYING), thrice.events[-1]) < 0.45


async def test_the_ring_timeout_is_honoured_in_scaled_time(dial: Dial) -> None:
    recorder = await dial(EXT[UserState.AWAY], ring_timeout_s=20.0)

    rang = seconds_between(recorder.first(K.RINGING), recorder.events[-1])
    assert 0.2 <= rang < 0.35


def test_delays_are_realistic_and_the_same_for_the_same_call_id() -> None:
    def plan(call_id: str) -> Any:
        request = CallRequest(call_id, ANNA, "x", Path("a.wav"))
        return plan_call(request, UserState.LOGGED_ON, None)

    plans = [plan(f"call-{i}") for i in range(200)]

    assert plan("call-7") == plans[7]
    assert len({p.after_s for p in plans}) == 200
    assert all(0.05 <= p.setup_s <= 0.15 and 1.0 <= p.after_s <= 3.0 for p in plans)


async def test_two_hundred_calls_are_active_at_once(
    sim: SimDialer, control: SimControl, announcement: Path
) -> None:
    requests = [
        CallRequest(f"c{i}", ANNA, "Rundruf", announcement, ring_timeout_s=5.0) for i in range(200)
    ]
    recorders = [Recorder() for _ in requests]
    started = time.perf_counter()

    outcomes = await asyncio.gather(
        *(sim.call(r, rec) for r, rec in zip(requests, recorders, strict=True))
    )

    # One call takes 2.4-5 s simulated (up to 50 ms here); 200 in a row would take 5 s or more.
    assert time.perf_counter() - started < 0.5
    assert set(outcomes) == {CallOutcome.CONFIRMED}
    assert (sim.peak_active, sim.active) == (200, 0)
    for request, recorder, outcome in zip(requests, recorders, outcomes, strict=True):
        assert_well_formed(recorder.events, outcome, request)


async def test_a_cancelled_call_frees_its_channel(sim: SimDialer, announcement: Path) -> None:
    recorder = Recorder()
    request = CallRequest("c1", EXT[UserState.AWAY], "Rundruf", announcement)
    task = asyncio.create_task(sim.call(request, recorder))
    await recorder.wait_for(K.RINGING)
    assert sim.active == 1

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert sim.active == 0
    assert ended(recorder) == (CallOutcome.FAILED, "cancelled")
