"""The broadcast executor on a real journal, the simulated dialer and a SwyxWare simulator.

Members live in a simulator state file; the agent's cache is filled as the
server's commands would fill it. Time runs 100 times faster in the dialer.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import wave
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.broadcast import audio
from edge_agent.broadcast.manager import Broadcasts, Trigger
from edge_agent.broadcast.model import Event, Mode
from edge_agent.broadcast.runner import INTERRUPTED, CallSettings
from edge_agent.cache import LocalCache
from edge_agent.dialer.sim import Behaviour, SimDialer, SimDialerControl
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimControl, SimPbx

SCALE = 0.01
GROUP = "Brandschutz"
AGENT_NUMBER = "990"


@dataclass
class Bed:
    control: SimControl
    script: SimDialerControl
    cache: LocalCache
    dialer: SimDialer
    broadcasts: Broadcasts
    group_id: str
    members: dict[str, str]  # name -> extension


def _wav(seconds: float, rate: int = 8000, channels: int = 1, amplitude: int = 1000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        frame = amplitude.to_bytes(2, "little", signed=True) * channels
        w.writeframes(frame * round(seconds * rate))
    return buffer.getvalue()


async def make_bed(
    tmp_path: Path,
    states: dict[str, UserState],
    *,
    channels: int = 30,
    timeout_s: int = 3,
    quorum: int | None = None,
    retry_pause_s: float = 0.05,
    max_attempts: int = 20,
) -> Bed:
    control = SimControl(tmp_path / "swyx.json")
    control.create()
    ids, extensions = [], {}
    for index, (name, state) in enumerate(states.items()):
        extension = str(200 + index)
        ids.append(control.add_user(name, extension, state))
        extensions[name] = extension
    agent_id = control.add_user(f"Rundruf {GROUP}", AGENT_NUMBER, callrouting_only=True)
    group_id = control.add_group(GROUP, [*ids, agent_id])
    pbx = SimPbx(control.state_path)
    await pbx.login(*_login(control))
    cache = LocalCache(tmp_path / "agent")
    cache.set_directory(await pbx.directory())
    cache.update_settings({"broadcastTimeoutSeconds": timeout_s})
    cache.broadcast_groups[group_id] = {
        "agentUserId": agent_id,
        "extension": AGENT_NUMBER,
        "pin": "123456",
        "announcements": {},
        "quorum": quorum,
        "repetitions": 1,
    }
    cache.save()
    dialer = SimDialer(control.state_path, time_scale=SCALE, max_parallel=channels)
    calls = CallSettings(ring_timeout_s=30, retry_pause_s=retry_pause_s, max_attempts=max_attempts)
    broadcasts = Broadcasts(tmp_path / "agent", cache, pbx, dialer, channels, calls)
    return Bed(
        control,
        SimDialerControl(control.state_path),
        cache,
        dialer,
        broadcasts,
        group_id,
        extensions,
    )


def _login(control: SimControl) -> tuple[str, str, str]:
    from edge_agent.pbx.sim import DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, DEFAULT_HOST

    return DEFAULT_HOST, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD


@pytest.fixture
async def beds(tmp_path: Path) -> AsyncIterator[list[Bed]]:
    made: list[Bed] = []
    yield made
    for bed in made:
        await bed.broadcasts.close()
        await bed.dialer.close()


async def run_to_end(bed: Bed, trigger: Trigger) -> tuple[str, list[Event]]:
    broadcast_id = await bed.broadcasts.accept(trigger)
    task = bed.broadcasts.running.get(broadcast_id)
    if task is not None:
        await asyncio.wait_for(task, 30)
    return broadcast_id, await bed.broadcasts.journal.events(broadcast_id)


def final_outcomes(events: list[Event]) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for e in events:
        if e.kind == "ended" and e.outcome:
            outcomes[e.pbx_id] = e.outcome
    return outcomes


def assert_each_attempt_ends_once(events: list[Event]) -> None:
    started = Counter((e.pbx_id, e.attempt_no) for e in events if e.kind == "started")
    ended = Counter((e.pbx_id, e.attempt_no) for e in events if e.kind == "ended")
    assert all(n == 1 for n in started.values()), started
    assert all(n == 1 for n in ended.values()), ended
    assert set(started) <= set(ended)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def alarm(source_id: str = "job-1", mode: Mode = Mode.ALARM, **fields: object) -> Trigger:
    return Trigger(
        source="job", source_id=source_id, mode=mode, agent_number=AGENT_NUMBER, **fields
    )  # type: ignore[arg-type]


async def test_an_alarm_calls_everyone_and_breaks_into_running_calls(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await make_bed(
        tmp_path,
        {
            "Anna": UserState.LOGGED_ON,
            "Bernd": UserState.SPEAKING_EXTERNAL,
            "Carla": UserState.DO_NOT_DISTURB,
            "Dieter": UserState.LOGGED_OFF,
        },
        timeout_s=1,
    )
    beds.append(bed)
    broadcast_id, events = await run_to_end(bed, alarm())
    outcomes = final_outcomes(events)
    by_name = {bed.cache.data["directory"]["users"][i]["id"]: u for i, u in enumerate("ABCD")}
    named = {by_name[k]: v for k, v in outcomes.items() if k in by_name}
    assert named == {"A": "confirmed", "B": "confirmed", "C": "confirmed", "D": "no_answer"}
    # Dieter never answers: retried until the timeout, each attempt numbered.
    dieter = [e for e in events if e.kind == "started" and by_name.get(e.pbx_id) == "D"]
    assert len(dieter) >= 2
    assert [e.attempt_no for e in dieter] == list(range(1, len(dieter) + 1))
    assert_each_attempt_ends_once(events)
    b = await bed.broadcasts.journal.get(broadcast_id)
    assert b.status == "completed"
    assert b.note is not None and "3 of 4 called members confirmed" in b.note


async def test_a_test_broadcast_skips_members_on_the_phone_and_interrupts_nobody(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await make_bed(
        tmp_path,
        {
            "Anna": UserState.LOGGED_ON,
            "Bernd": UserState.SPEAKING_INTERNAL,
            "Carla": UserState.BUSY,
            "Dieter": UserState.LOGGED_ON,
        },
    )
    beds.append(bed)
    _, events = await run_to_end(bed, alarm(mode=Mode.TEST))
    outcomes = final_outcomes(events)
    assert sorted(outcomes.values()) == ["confirmed", "confirmed", "skipped_busy", "skipped_busy"]
    skipped = [e for e in events if e.outcome == "skipped_busy"]
    assert {e.detail for e in skipped} == {"busy (speaking_internal)", "busy (busy)"}
    # Skipped members are never dialled.
    assert not any(e.kind == "started" and e.pbx_id in {s.pbx_id for s in skipped} for e in events)


async def test_test_mode_takes_the_states_the_routing_script_sent(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON, "Bernd": UserState.LOGGED_ON})
    beds.append(bed)
    anna = bed.cache.data["directory"]["users"][0]["id"]
    _, events = await run_to_end(bed, alarm(mode=Mode.TEST, states={anna: 3}))
    assert final_outcomes(events)[anna] == "skipped_busy"


async def test_a_recorded_message_is_converted_and_played(tmp_path: Path, beds: list[Bed]) -> None:
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON})
    beds.append(bed)
    recorded = _wav(2.0, rate=16000, channels=2)

    async def fetch() -> bytes:
        return recorded

    broadcast_id, events = await run_to_end(bed, alarm(mode=Mode.ALARM_RECORDED, recording=fetch))
    assert set(final_outcomes(events).values()) == {"confirmed"}
    b = await bed.broadcasts.journal.get(broadcast_id)
    with wave.open(str(b.announcement), "rb") as played:
        assert (played.getnchannels(), played.getsampwidth(), played.getframerate()) == (1, 2, 8000)
        frames = played.readframes(16000)  # the first two seconds are the message
    assert frames[:2] == (1000).to_bytes(2, "little", signed=True)
    assert b.note is None or "standard message" not in b.note


async def test_an_unusable_recording_still_raises_the_alarm_with_the_stored_message(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON})
    beds.append(bed)

    async def fetch() -> bytes:
        return b"RIFF not a wav"

    broadcast_id, events = await run_to_end(bed, alarm(mode=Mode.ALARM_RECORDED, recording=fetch))
    assert set(final_outcomes(events).values()) == {"confirmed"}
    b = await bed.broadcasts.journal.get(broadcast_id)
    assert b.note is not None and "recorded message is unusable" in b.note


async def test_repeat_then_confirm_counts_and_a_voicemail_is_not_reached(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await make_bed(
        tmp_path, {"Anna": UserState.LOGGED_ON, "Box": UserState.LOGGED_ON}, timeout_s=1
    )
    beds.append(bed)
    bed.script.script(bed.members["Anna"], Behaviour.REPEAT_THEN_CONFIRM, after_s=0.5)
    bed.script.script(bed.members["Box"], Behaviour.VOICEMAIL, after_s=0.5)
    _, events = await run_to_end(bed, alarm())
    users = {u["name"]: u["id"] for u in bed.cache.data["directory"]["users"]}
    outcomes = final_outcomes(events)
    assert outcomes[users["Anna"]] == "confirmed"
    assert outcomes[users["Box"]] == "answered"
    box_attempts = {e.attempt_no for e in events if e.pbx_id == users["Box"]}
    assert len(box_attempts) >= 2  # an answer without the 1 is called again


async def test_the_quorum_stops_new_calls_and_says_so(tmp_path: Path, beds: list[Bed]) -> None:
    names = {f"M{i:02d}": UserState.LOGGED_ON for i in range(12)}
    bed = await make_bed(tmp_path, names, channels=2, quorum=3)
    beds.append(bed)
    broadcast_id, events = await run_to_end(bed, alarm())
    confirmed = [e for e in events if e.outcome == "confirmed"]
    assert 3 <= len(confirmed) <= 4  # the calls under way when the third confirmed may end too
    started = {e.pbx_id for e in events if e.kind == "started"}
    assert len(started) < 12
    b = await bed.broadcasts.journal.get(broadcast_id)
    assert b.quorum == 3 and b.quorum_reached_at is not None
    assert b.note is not None and "quorum of 3 reached" in b.note and "not called" in b.note
    # Every member has a row: those the quorum made unnecessary say so (issue 14, point 11).
    assert {e.pbx_id for e in events if e.kind == "ended"} == {
        u["id"] for u in bed.cache.data["directory"]["users"] if u["name"] in names
    }
    spared = [e for e in events if e.outcome == "not_called"]
    assert {e.pbx_id for e in spared} == {e.pbx_id for e in events if e.kind == "ended"} - started
    assert all(e.detail == "quorumReached" and e.late is None for e in spared)
    assert f"quorum of 3 reached, {len(spared)} members not called" in b.note


async def test_two_hundred_members_on_ten_channels_never_exceed_ten_calls(
    tmp_path: Path, beds: list[Bed]
) -> None:
    names = {f"Member {i:03d}": UserState.LOGGED_ON for i in range(200)}
    bed = await make_bed(tmp_path, names, channels=10, timeout_s=60)
    beds.append(bed)
    for extension in list(bed.members.values())[::7]:
        bed.script.script(extension, Behaviour.CONFIRM, after_s=0.2)
    _, events = await run_to_end(bed, alarm())
    assert len([e for e in events if e.outcome == "confirmed"]) == 200
    assert bed.dialer.peak_active == 10
    assert bed.broadcasts.channels.peak == 10
    assert_each_attempt_ends_once(events)


async def test_a_trigger_is_accepted_once(tmp_path: Path, beds: list[Bed]) -> None:
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON})
    beds.append(bed)
    first, second = await asyncio.gather(
        bed.broadcasts.accept(alarm("job-x")), bed.broadcasts.accept(alarm("job-x"))
    )
    assert first == second
    await asyncio.wait_for(bed.broadcasts.running[first], 30)
    assert await bed.broadcasts.accept(alarm("job-x")) == first
    assert len(await bed.broadcasts.journal.unsettled()) == 1


async def test_an_unknown_agent_number_ends_as_a_failed_broadcast(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON})
    beds.append(bed)
    trigger = Trigger(source="job", source_id="job-9", mode=Mode.ALARM, agent_number="4711")
    broadcast_id, events = await run_to_end(bed, trigger)
    b = await bed.broadcasts.journal.get(broadcast_id)
    assert (b.status, events) == ("failed", [])
    assert b.note == "no broadcast group for '4711' on this agent"


async def test_a_restart_ends_the_interrupted_calls_and_goes_on_with_the_next_attempt(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON, "Bernd": UserState.LOGGED_ON})
    beds.append(bed)
    anna, bernd = (u["id"] for u in bed.cache.data["directory"]["users"][:2])
    # What a kill leaves behind: the broadcast journaled, Anna's first call started and
    # ringing, Bernd's first call over but unconfirmed; the task is gone.
    stopped = bed.broadcasts.running
    broadcast_id = await bed.broadcasts.accept(alarm("job-crash"))
    stopped.pop(broadcast_id).cancel()
    journal = bed.broadcasts.journal
    for event in await journal.events(broadcast_id):
        raise AssertionError(f"no call may have begun yet: {event}")
    now = datetime.now(UTC)
    await journal.record(broadcast_id, anna, 1, "started", now)
    await journal.record(broadcast_id, anna, 1, "ringing", now)
    await journal.record(broadcast_id, bernd, 1, "started", now)
    await journal.record(broadcast_id, bernd, 1, "ended", now, "answered", "no confirmation")
    await journal.close()

    again = Broadcasts(
        tmp_path / "agent",
        bed.cache,
        SimPbx(bed.control.state_path),
        bed.dialer,
        30,
        CallSettings(),
    )
    bed.broadcasts = again
    await again.resume()
    await asyncio.wait_for(again.running[broadcast_id], 30)
    events = await again.journal.events(broadcast_id)
    assert_each_attempt_ends_once(events)
    assert [(e.pbx_id, e.attempt_no) for e in events if e.detail == INTERRUPTED] == [(anna, 1)]
    assert sorted(
        (e.pbx_id, e.attempt_no, e.outcome)
        for e in events
        if e.attempt_no == 2 and e.kind == "ended"
    ) == sorted([(anna, 2, "confirmed"), (bernd, 2, "confirmed")])
    assert not any(e.attempt_no > 2 for e in events)


def test_a_recording_in_any_pcm_shape_becomes_a_telephony_master() -> None:
    for rate, channels in ((8000, 1), (16000, 2), (44100, 1), (11025, 2)):
        master = audio.telephony_master(_wav(1.0, rate, channels))
        with wave.open(io.BytesIO(master), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
            assert abs(w.getnframes() - 8000) <= 8


def test_audio_that_is_no_wav_is_refused_with_a_reason() -> None:
    with pytest.raises(audio.AudioError, match="not a PCM WAV"):
        audio.telephony_master(b"hello")


async def _journaled_then_stopped(bed: Bed, source_id: str) -> str:
    """Accepts a trigger and drops its task before it runs, as a kill would."""
    broadcast_id = await bed.broadcasts.accept(alarm(source_id))
    bed.broadcasts.running.pop(broadcast_id).cancel()
    assert await bed.broadcasts.journal.events(broadcast_id) == []
    return broadcast_id


async def _restart(bed: Bed, tmp_path: Path) -> Broadcasts:
    await bed.broadcasts.journal.close()
    again = Broadcasts(
        tmp_path / "agent",
        bed.cache,
        SimPbx(bed.control.state_path),
        bed.dialer,
        60,
        CallSettings(),
    )
    bed.broadcasts = again
    await again.resume()
    return again


async def test_a_restart_between_attempts_numbers_every_new_event_once(
    tmp_path: Path, beds: list[Bed]
) -> None:
    names = {f"M{i:02d}": UserState.LOGGED_ON for i in range(30)}
    bed = await make_bed(tmp_path, names, channels=60)
    beds.append(bed)
    broadcast_id = await _journaled_then_stopped(bed, "job-pause")
    users = [u["id"] for u in bed.cache.data["directory"]["users"][:30]]
    now = datetime.now(UTC)
    # Everyone was in the pause between attempts: no call open, all due at once.
    await bed.broadcasts.journal.record_many(
        broadcast_id,
        [(u, 1, k, now, o, None) for u in users for k, o in (("started", None), ("ended", "busy"))],
    )
    again = await _restart(bed, tmp_path)
    await asyncio.wait_for(again.running[broadcast_id], 30)
    events = await again.journal.events(broadcast_id)
    assert_each_attempt_ends_once(events)
    assert set(final_outcomes(events).values()) == {"confirmed"}
    assert (await again.journal.get(broadcast_id)).status == "completed"


async def test_a_member_who_confirmed_just_before_a_crash_is_not_called_again(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON})
    beds.append(bed)
    broadcast_id = await _journaled_then_stopped(bed, "job-confirmed")
    anna = bed.cache.data["directory"]["users"][0]["id"]
    now = datetime.now(UTC)
    await bed.broadcasts.journal.record_many(
        broadcast_id,
        [(anna, 1, k, now, None, None) for k in ("started", "ringing", "answered", "confirmed")],
    )
    again = await _restart(bed, tmp_path)
    await asyncio.wait_for(again.running[broadcast_id], 30)
    events = await again.journal.events(broadcast_id)
    assert [(e.attempt_no, e.kind, e.outcome) for e in events][-1] == (1, "ended", "confirmed")
    assert not any(e.attempt_no > 1 for e in events)


async def test_one_faulty_write_does_not_take_other_writers_events_down(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON})
    beds.append(bed)
    journal = bed.broadcasts.journal
    broadcast_id = await _journaled_then_stopped(bed, "job-a")
    duplicate = await journal.get(broadcast_id)
    now = datetime.now(UTC)
    results = await asyncio.gather(
        journal.create(duplicate, []),  # the same id again: refused
        journal.record(broadcast_id, "x", 1, "started", now),
        journal.record(broadcast_id, "x", 1, "ended", now, "busy"),
        return_exceptions=True,
    )
    assert isinstance(results[0], sqlite3.IntegrityError)
    assert results[1:] == [1, 2]
    assert [e.kind for e in await journal.events(broadcast_id)] == ["started", "ended"]


@pytest.mark.parametrize("round_", range(3))
async def test_the_quorum_leaves_no_call_without_an_end(
    tmp_path: Path, beds: list[Bed], round_: int
) -> None:
    names = {f"M{i:02d}": UserState.LOGGED_ON for i in range(60)}
    bed = await make_bed(tmp_path, names, channels=60, quorum=1)
    beds.append(bed)
    broadcast_id, events = await run_to_end(bed, alarm(f"job-q{round_}"))
    assert_each_attempt_ends_once(events)
    quorum_at = (await bed.broadcasts.journal.get(broadcast_id)).quorum_reached_at
    assert quorum_at is not None
    late = [e for e in events if e.kind == "ringing" and e.at > quorum_at]
    assert late == [], "no phone starts ringing after the quorum"
