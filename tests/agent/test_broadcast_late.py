"""An agent down longer than the broadcast timeout (issue 14, point 11).

An alarm still calls every member once, each such attempt marked late with the
reason and the outage; a test broadcast calls nobody after its timeout and says
so with a `not_called` row. Every member ends with a row either way. The
simulated dialer and a SwyxWare simulator, as in test_broadcast_executor.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from edge_agent.broadcast.intake import JobIntake
from edge_agent.broadcast.manager import Broadcasts, Trigger, trigger_from_job
from edge_agent.broadcast.model import Event, Mode
from edge_agent.broadcast.runner import INTERRUPTED
from edge_agent.config import Enrolment
from edge_agent.dialer.port import CallOutcome, CallRequest, DialerError, EventSink
from edge_agent.jobservice import JobServiceClient
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimPbx
from edge_agent.server import Server
from edge_agent.service import AgentService
from edge_agent.settings import AgentSettings
from tests.agent.test_broadcast_executor import (
    AGENT_NUMBER,
    Bed,
    _login,
    _restart,
    alarm,
    assert_each_attempt_ends_once,
    beds,
    final_outcomes,
    make_bed,
    run_to_end,
)
from tests.jobservice.support import AGENT, Service, job_body, make_settings

__all__ = ["beds"]  # the fixture, shared with test_broadcast_executor

MEMBERS = {"Anna": UserState.LOGGED_ON, "Bernd": UserState.LOGGED_ON, "Carla": UserState.LOGGED_ON}


def _ids(bed: Bed) -> list[str]:
    return [u["id"] for u in bed.cache.data["directory"]["users"][: len(MEMBERS)]]


def _rows(events: list[Event]) -> Counter[str]:
    """Outcome rows per member: one per attempt, ended once each."""
    return Counter(e.pbx_id for e in events if e.kind == "ended")


def _started(events: list[Event]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    for e in events:
        if e.kind == "started":
            found.setdefault(e.pbx_id, []).append(e)
    return found


def _job(job_id: str, mode: Mode, received: datetime) -> dict[str, object]:
    """A job as the job service serves it (swyx_jobservice/README.md)."""
    return {
        "id": job_id,
        "receivedAt": received.isoformat(timespec="microseconds"),
        "agentNumber": "990",
        "groupId": None,
        "mode": int(mode),
        "callerNumber": "0711 4711",
        "callerName": "Pförtner",
        "idempotencyKey": f"990-{job_id}",
        "memberStates": None,
        "recording": None,
    }


async def _no_recording(job_id: str) -> bytes:
    raise AssertionError("modes 1 and 2 have no recording")


async def _bed(tmp_path: Path, beds: list[Bed], timeout_s: int) -> Bed:
    """Anna, Bernd and Carla with this broadcast timeout, closed after the test."""
    bed = await make_bed(tmp_path, MEMBERS, timeout_s=timeout_s)
    beds.append(bed)
    return bed


def _waited(job_id: str, mode: Mode, waited: timedelta) -> tuple[Trigger, datetime]:
    """The trigger of a job the job service received `waited` ago, and that time."""
    received = datetime.now(UTC) - waited
    return trigger_from_job(_job(job_id, mode, received), _no_recording), received


async def test_an_alarm_job_that_waited_longer_than_the_timeout_calls_everyone_once_late(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await _bed(tmp_path, beds, timeout_s=1)
    # The real job service takes the job while the agent is down ...
    (tmp_path / "jobservice").mkdir()
    jobs = Service.start(make_settings(tmp_path / "jobservice"))
    job_id = await jobs.accepted(job_body(agentNumber=AGENT_NUMBER))
    received = datetime.fromisoformat((await jobs.poll())[0]["receivedAt"])
    await asyncio.sleep(1.3)  # ... longer than the broadcast timeout
    client = JobServiceClient("http://jobs", AGENT, transport=httpx.ASGITransport(app=jobs.app))
    server = Server(Enrolment("http://127.0.0.1:9", "installation", "token"), verify_tls=True)
    taken_up = datetime.now(UTC)
    intake = asyncio.create_task(JobIntake(client, bed.broadcasts, server).run_forever())
    try:
        async with asyncio.timeout(30):
            journal = bed.broadcasts.journal
            while True:  # the journal tells of each commit
                journal.changed.clear()
                if (b := await journal.by_source(job_id)) is not None:
                    break
                await journal.changed.wait()
            if (task := bed.broadcasts.running.get(b.id)) is not None:
                await task
    finally:
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        await client.aclose()
        await server.aclose()
        await jobs.close()
    events = await bed.broadcasts.journal.events(b.id)
    assert_each_attempt_ends_once(events)
    assert _rows(events) == Counter({m: 1 for m in _ids(bed)})
    for member, started in _started(events).items():
        assert [e.attempt_no for e in started] == [1], member
        late = started[0].late
        assert late is not None and late.reason == "agent_down"
        assert late.since == received
        assert late.until is not None and taken_up <= late.until <= datetime.now(UTC)
    assert set(_started(events)) == set(_ids(bed))
    # The timeout counts from the alarm, not from when the agent came back.
    assert (b.started_at, b.deadline_at) == (received, received + timedelta(seconds=1))


async def test_a_test_job_that_waited_longer_than_the_timeout_calls_nobody_and_says_so(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await _bed(tmp_path, beds, timeout_s=3)
    trigger, received = _waited("job-test", Mode.TEST, timedelta(seconds=10))
    broadcast_id, events = await run_to_end(bed, trigger)
    assert not any(e.kind == "started" for e in events)
    assert _rows(events) == Counter({m: 1 for m in _ids(bed)})
    for e in events:
        assert (e.kind, e.outcome, e.detail) == ("ended", "not_called", None)  # worded by code
        assert e.late is not None and (e.late.reason, e.late.since) == ("agent_down", received)
    note = (await bed.broadcasts.journal.get(broadcast_id)).note or ""
    assert "3 not called (the timeout had passed)" in note


async def test_a_job_that_waited_less_than_the_timeout_runs_on_time(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await _bed(tmp_path, beds, timeout_s=30)
    trigger, _ = _waited("job-soon", Mode.ALARM, timedelta(seconds=2))
    _, events = await run_to_end(bed, trigger)
    assert {e.outcome for e in events if e.kind == "ended"} == {"confirmed"}
    assert all(e.late is None for e in events)


async def _killed_before_it_ran(bed: Bed, job_id: str, mode: Mode) -> str:
    """Journaled, and its task dropped before it ran, as a kill would."""
    broadcast_id = await bed.broadcasts.accept(alarm(job_id, mode=mode))
    bed.broadcasts.running.pop(broadcast_id).cancel()
    return broadcast_id


async def _restarted_to_end(
    bed: Bed, tmp_path: Path, broadcast_id: str
) -> tuple[Broadcasts, list[Event]]:
    """The agent started again on the same journal, the broadcast run to its end there."""
    again = await _restart(bed, tmp_path)
    await asyncio.wait_for(again.running[broadcast_id], 30)
    return again, await again.journal.events(broadcast_id)


async def _stopped_after_annas_call(bed: Bed, tmp_path: Path, mode: Mode) -> tuple[str, datetime]:
    """A broadcast killed after Anna's first call, restarted once its timeout has passed."""
    broadcast_id = await _killed_before_it_ran(bed, f"job-kill-{mode}", mode)
    anna = _ids(bed)[0]
    last = datetime.now(UTC)
    await bed.broadcasts.journal.record_many(
        broadcast_id,
        [(anna, 1, "started", last, None, "200"), (anna, 1, "ended", last, "busy", None)],
    )
    deadline = (await bed.broadcasts.journal.get(broadcast_id)).deadline_at
    await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.2)
    return broadcast_id, last


async def test_an_alarm_killed_mid_broadcast_and_back_after_the_timeout_calls_the_rest_late(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await _bed(tmp_path, beds, timeout_s=1)
    broadcast_id, last = await _stopped_after_annas_call(bed, tmp_path, Mode.ALARM)
    restarted = datetime.now(UTC)
    again, events = await _restarted_to_end(bed, tmp_path, broadcast_id)
    assert_each_attempt_ends_once(events)
    anna, bernd, carla = _ids(bed)
    # Anna had her attempt before the stop: the timeout holds for her.
    assert _rows(events) == Counter({anna: 1, bernd: 1, carla: 1})
    started = _started(events)
    assert started[anna][0].late is None
    for member in (bernd, carla):
        late = started[member][0].late
        assert late is not None and late.reason == "agent_down", member
        assert late.since == last
        assert late.until is not None and late.until >= restarted
    outcomes = {e.pbx_id: e.outcome for e in events if e.kind == "ended"}
    assert outcomes == {anna: "busy", bernd: "confirmed", carla: "confirmed"}
    assert (await again.journal.get(broadcast_id)).status == "completed"


async def test_a_test_broadcast_killed_and_back_after_the_timeout_marks_the_rest_not_called(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await _bed(tmp_path, beds, timeout_s=1)
    broadcast_id, last = await _stopped_after_annas_call(bed, tmp_path, Mode.TEST)
    _, events = await _restarted_to_end(bed, tmp_path, broadcast_id)
    anna, bernd, carla = _ids(bed)
    assert _rows(events) == Counter({anna: 1, bernd: 1, carla: 1})
    assert set(_started(events)) == {anna}
    left_out = [e for e in events if e.outcome == "not_called"]
    assert {e.pbx_id for e in left_out} == {bernd, carla}
    assert all(
        e.late is not None and (e.late.reason, e.late.since) == ("agent_down", last)
        for e in left_out
    )


def _service(bed: Bed, tmp_path: Path) -> AgentService:
    settings = AgentSettings(
        pbx="sim",
        dialer="sim",
        state_dir=tmp_path / "agent",
        sim_state=bed.control.state_path,
        sim_time_scale=0.01,
        retry_pause_seconds=0.05,
    )
    enrolment = Enrolment("http://127.0.0.1:9", "installation", "token")
    return AgentService(settings, enrolment, SimPbx(bed.control.state_path), bed.dialer)


async def test_an_alarm_command_delivered_after_the_timeout_calls_everyone_once_late(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed = await _bed(tmp_path, beds, timeout_s=3)
    await bed.broadcasts.journal.close()  # the service below owns the journal
    service = _service(bed, tmp_path)
    await service.pbx.login(*_login(bed.control))
    bed.broadcasts = service.broadcasts
    reported: list[tuple[str, bool]] = []

    async def report(command_id: str, outcome: object) -> None:
        reported.append((command_id, getattr(outcome, "ok", False)))

    service._report = report  # type: ignore[method-assign] # no server in this test
    created = datetime.now(UTC) - timedelta(seconds=10)
    command = {
        "id": "cmd-late",
        "type": "triggerBroadcast",
        "payload": {"groupPbxId": bed.group_id, "mode": 2, "requestedBy": "Admin <a@b.example>"},
        "secrets": {},
        "createdAt": created.isoformat(),
        "expiresAt": (created + timedelta(minutes=15)).isoformat(),
    }
    received = datetime.now(UTC)
    await service.handle(command)
    assert reported == [("cmd-late", True)]
    b = await service.broadcasts.journal.by_source("cmd-late")
    assert b is not None
    await asyncio.wait_for(service.broadcasts.running[b.id], 30)
    events = await service.broadcasts.journal.events(b.id)
    assert_each_attempt_ends_once(events)
    assert _rows(events) == Counter({m: 1 for m in _ids(bed)})
    for started in _started(events).values():
        late = started[0].late
        assert late is not None and (late.reason, late.since) == ("command_late", created)
        assert late.until is not None and late.until >= received
    assert set(_started(events)) == set(_ids(bed))


def _flaky(bed: Bed, failures: int) -> list[datetime]:
    """The dialer raises for its first `failures` calls (its network not up after a
    restart, say); returns the times of the calls it refused."""
    real = bed.dialer.call
    refused: list[datetime] = []

    async def call(request: CallRequest, on_event: EventSink) -> CallOutcome:
        if len(refused) < failures:
            refused.append(datetime.now(UTC))
            raise DialerError("the SIP transport is not up yet")
        return await real(request, on_event)

    bed.dialer.call = call  # type: ignore[method-assign]
    return refused


async def test_a_late_alarm_tries_a_member_again_until_a_call_reaches_them(
    tmp_path: Path, beds: list[Bed]
) -> None:
    """Point 1: an agent-side failure does not use up the member's late attempt."""
    bed = await _bed(tmp_path, beds, timeout_s=3)
    refused = _flaky(bed, failures=6)  # two failed tries for each member
    trigger, _ = _waited("job-flaky", Mode.ALARM, timedelta(seconds=10))
    _, events = await run_to_end(bed, trigger)
    assert_each_attempt_ends_once(events)
    assert len(refused) == 6
    assert final_outcomes(events) == {m: "confirmed" for m in _ids(bed)}
    for member, started in _started(events).items():
        assert len(started) >= 2, member  # the failed tries, then one that reached
        assert all(e.late is not None and e.late.reason == "agent_down" for e in started)
    # The pause grows between late tries (backoff), it is no tight loop.
    gaps = [(b - a).total_seconds() for a, b in pairwise(refused)]
    assert max(gaps) >= 0.05


async def test_a_late_alarm_whose_dialer_never_works_ends_after_the_timeout_once_more(
    tmp_path: Path, beds: list[Bed]
) -> None:
    """Point 1: the late retries are bounded: the timeout again, from the late start."""
    bed = await _bed(tmp_path, beds, timeout_s=1)
    _flaky(bed, failures=10_000)
    trigger, _ = _waited("job-dead", Mode.ALARM, timedelta(seconds=10))
    taken_up = datetime.now(UTC)
    broadcast_id, events = await run_to_end(bed, trigger)
    assert datetime.now(UTC) - taken_up < timedelta(seconds=5)
    assert_each_attempt_ends_once(events)
    assert set(final_outcomes(events).values()) == {"failed"}
    assert all(len(started) >= 2 for started in _started(events).values())
    assert (await bed.broadcasts.journal.get(broadcast_id)).status == "completed"


async def test_a_call_under_way_at_a_kill_is_made_again_late_once(
    tmp_path: Path, beds: list[Bed]
) -> None:
    """Point 4: an interrupted attempt (the phone may never have rung) reached nobody."""
    bed = await _bed(tmp_path, beds, timeout_s=1)
    broadcast_id = await _killed_before_it_ran(bed, "job-cut", Mode.ALARM)
    anna, bernd, carla = _ids(bed)
    last = datetime.now(UTC)  # journaled before dialling, then the kill
    await bed.broadcasts.journal.record_many(
        broadcast_id, [(anna, 1, "started", last, None, "200")]
    )
    await asyncio.sleep(1.3)
    _, events = await _restarted_to_end(bed, tmp_path, broadcast_id)
    assert_each_attempt_ends_once(events)
    assert _rows(events) == Counter({anna: 2, bernd: 1, carla: 1})
    ends = {(e.pbx_id, e.attempt_no): e for e in events if e.kind == "ended"}
    assert (ends[anna, 1].outcome, ends[anna, 1].detail) == ("failed", INTERRUPTED)
    assert ends[anna, 2].outcome == "confirmed"
    late = _started(events)[anna][1].late
    assert late is not None and (late.reason, late.since) == ("agent_down", last)
    assert {e.pbx_id for e in events if e.kind == "ringing"} == {anna, bernd, carla}


async def test_an_outage_that_began_after_the_deadline_is_not_given_as_the_reason(
    tmp_path: Path, beds: list[Bed]
) -> None:
    """Point 5: the agent still ran when the timeout passed: the deadline is the reason."""
    bed = await _bed(tmp_path, beds, timeout_s=1)
    broadcast_id = await _killed_before_it_ran(bed, "job-after", Mode.ALARM)
    anna, bernd, carla = _ids(bed)
    deadline = (await bed.broadcasts.journal.get(broadcast_id)).deadline_at
    await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.3)
    last = datetime.now(UTC)  # Anna's busy call after the deadline, then the stop
    await bed.broadcasts.journal.record_many(
        broadcast_id,
        [(anna, 1, "started", last, None, "200"), (anna, 1, "ended", last, "busy", None)],
    )
    _, events = await _restarted_to_end(bed, tmp_path, broadcast_id)
    started = _started(events)
    for member in (bernd, carla):
        late = started[member][0].late
        assert late is not None and (late.reason, late.since) == ("deadline_passed", deadline)


async def _service_without_server(bed: Bed, tmp_path: Path) -> AgentService:
    await bed.broadcasts.journal.close()  # the service below owns the journal
    service = _service(bed, tmp_path)
    await service.pbx.login(*_login(bed.control))
    bed.broadcasts = service.broadcasts

    async def report(command_id: str, outcome: object) -> None:
        pass

    service._report = report  # type: ignore[method-assign] # no server in this test
    return service


def _skewed_command(
    command_id: str, bed: Bed, mode: Mode, age: timedelta, skew: timedelta
) -> dict[str, object]:
    """A triggerBroadcast as the server sends it `age` after creating it, its clock
    `skew` ahead of the agent's (negative: behind)."""
    server_now = datetime.now(UTC) + skew
    created = server_now - age
    return {
        "id": command_id,
        "type": "triggerBroadcast",
        "payload": {
            "groupPbxId": bed.group_id,
            "mode": int(mode),
            "requestedBy": "A <a@b.example>",
        },
        "secrets": {},
        "createdAt": created.isoformat(),
        "expiresAt": (created + timedelta(minutes=15)).isoformat(),
        "serverTime": server_now.isoformat(),
    }


@pytest.mark.parametrize("mode", [Mode.TEST, Mode.ALARM])
@pytest.mark.parametrize("skew_s", [-60, 60])
async def test_a_command_taken_up_at_once_runs_on_time_whatever_the_server_clock(
    tmp_path: Path, beds: list[Bed], mode: Mode, skew_s: int
) -> None:
    """Point 2: the command's age is measured in one clock, the server's."""
    bed = await _bed(tmp_path, beds, timeout_s=30)
    service = await _service_without_server(bed, tmp_path)
    command = _skewed_command(
        f"cmd-now{skew_s}", bed, mode, timedelta(0), timedelta(seconds=skew_s)
    )
    taken_up = datetime.now(UTC)
    await service.handle(command)
    b = await service.broadcasts.journal.by_source(str(command["id"]))
    assert b is not None
    await asyncio.wait_for(service.broadcasts.running[b.id], 30)
    events = await service.broadcasts.journal.events(b.id)
    assert final_outcomes(events) == {m: "confirmed" for m in _ids(bed)}
    assert all(e.late is None for e in events)
    assert abs((b.started_at - taken_up).total_seconds()) < 2
    assert b.deadline_at - b.started_at == timedelta(seconds=30)


@pytest.mark.parametrize("skew_s", [-60, 60])
async def test_a_command_that_waited_past_the_timeout_is_late_whatever_the_server_clock(
    tmp_path: Path, beds: list[Bed], skew_s: int
) -> None:
    """Point 2: ten seconds in the server's clock are ten seconds here, too."""
    bed = await _bed(tmp_path, beds, timeout_s=3)
    service = await _service_without_server(bed, tmp_path)
    age = timedelta(seconds=10)
    command = _skewed_command(f"cmd-old{skew_s}", bed, Mode.ALARM, age, timedelta(seconds=skew_s))
    received = datetime.now(UTC)
    await service.handle(command)
    b = await service.broadcasts.journal.by_source(str(command["id"]))
    assert b is not None
    await asyncio.wait_for(service.broadcasts.running[b.id], 30)
    events = await service.broadcasts.journal.events(b.id)
    assert final_outcomes(events) == {m: "confirmed" for m in _ids(bed)}
    assert abs((received - age - b.started_at).total_seconds()) < 2
    for started in _started(events).values():
        late = started[0].late
        assert late is not None and (late.reason, late.since) == ("command_late", b.started_at)


async def test_a_command_is_expired_by_its_age_in_the_servers_clock(
    tmp_path: Path, beds: list[Bed]
) -> None:
    """Point 2: a server clock 20 minutes behind does not expire a fresh command."""
    bed = await _bed(tmp_path, beds, timeout_s=30)
    service = await _service_without_server(bed, tmp_path)
    command = _skewed_command("cmd-fresh", bed, Mode.ALARM, timedelta(0), timedelta(minutes=-20))
    await service.handle(command)
    b = await service.broadcasts.journal.by_source("cmd-fresh")
    assert b is not None
    await asyncio.wait_for(service.broadcasts.running[b.id], 30)


async def test_a_command_received_after_its_expiry_is_refused_with_a_code(
    tmp_path: Path, beds: list[Bed]
) -> None:
    """Point 3: the server words the refusal (a failed trigger in the history, a mail)."""
    bed = await _bed(tmp_path, beds, timeout_s=30)
    service = await _service_without_server(bed, tmp_path)
    reported: list[object] = []

    async def report(command_id: str, outcome: object) -> None:
        reported.append(outcome)

    service._report = report  # type: ignore[method-assign] # no server in this test
    age = timedelta(minutes=16)  # older than its 15 minutes, in the server's clock
    command = _skewed_command("cmd-expired", bed, Mode.ALARM, age, timedelta(minutes=20))
    await service.handle(command)
    [outcome] = reported
    assert getattr(outcome, "ok", True) is False
    assert getattr(outcome, "result", None) == {"errorCode": "commandExpired"}
    assert await service.broadcasts.journal.by_source("cmd-expired") is None


async def test_a_dialer_that_cannot_reach_its_pbx_leaves_its_code_as_the_attempts_detail(
    tmp_path: Path, beds: list[Bed]
) -> None:
    """The history words a code (issue 15 point 9, the outside review's point 8): the
    attempt's detail is "tlsCertificate", not the English sentence the log gets."""
    bed = await _bed(tmp_path, beds, timeout_s=1)

    async def call(request: CallRequest, on_event: EventSink) -> CallOutcome:
        raise DialerError(
            "the PBX's TLS certificate (pbx:5061) is not accepted: certificate has expired",
            code="tlsCertificate",
        )

    bed.dialer.call = call  # type: ignore[method-assign]
    trigger, _ = _waited("job-certificate", Mode.ALARM, timedelta(0))
    _, events = await run_to_end(bed, trigger)
    details = {e.detail for e in events if e.kind == "ended"}
    assert details == {"tlsCertificate"}, details
