"""The simulated trigger call against the real job service app and a real simulator state.

The caller's side of rundruf.lua's flow: PIN, menu, confirmation, the post; the
per-caller throttle in its file next to the state; the wrong-PIN notice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import (
    DEFAULT_ADMIN_PASSWORD,
    DEFAULT_ADMIN_USER,
    DEFAULT_HOST,
    SimControl,
    SimPbx,
)
from edge_agent.pbx.sim_callflow import cut_recording, idempotency_key
from edge_agent.pbx.sim_throttle import AgentThrottle, ThrottleRules, throttle_path
from edge_agent.pbx.sim_trigger import Outcome, Prompt, TriggerPhone, TriggerResult
from tests.jobservice.support import AGENT, ROUTING, Service, bearer, make_settings, wav_bytes
from tests.jobservice.test_process import JobService
from tests.processes import RUNDRUF, clean_env

P = Prompt
SCALE = 0.02  # 1 s of simulated time is 20 ms here
PIN = "123456"
AGENT_NUMBER = "231"
CALLER = "0711 4711"


@dataclass
class World:
    state_path: Path
    service: Service
    members: dict[str, str]  # name -> pbx user id

    def phone(
        self,
        token: str = ROUTING,
        transport: httpx.AsyncBaseTransport | None = None,
        time_scale: float = SCALE,
    ) -> TriggerPhone:
        return TriggerPhone(
            self.state_path,
            "http://jobs",
            token,
            time_scale=time_scale,
            transport=transport or httpx.ASGITransport(app=self.service.app),
        )

    async def notices(self) -> list[dict[str, Any]]:
        response = await self.service.client.get("/notices", headers=bearer(AGENT))
        assert response.status_code == 200, response.text
        notices: list[dict[str, Any]] = response.json()["notices"]
        return notices


async def make_pbx(state_path: Path) -> dict[str, str]:
    """A simulated SwyxWare with one broadcast group; its members' ids by first name."""
    control = SimControl(state_path)
    control.create()
    anna = control.add_user("Anna Müller", "201", UserState.LOGGED_ON)
    bernd = control.add_user("Bernd Schmidt", "202", UserState.BUSY)
    control.add_user("Carla Schneider", "203", UserState.AWAY)  # in no broadcast group
    control.add_group("Brandschutz", [anna, bernd])
    # The agent user as the agent makes it (commands.enable_broadcast), through the adapter.
    pbx = SimPbx(state_path)
    await pbx.login(DEFAULT_HOST, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD)
    agent = await pbx.create_user("Rundruf Brandschutz", "", AGENT_NUMBER, callrouting_only=True)
    await pbx.set_agent_pin(agent.id, PIN)
    return {"anna": anna, "bernd": bernd}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    state_path = tmp_path / "swyx-sim.json"
    members = await make_pbx(state_path)
    service = Service.start(make_settings(tmp_path))
    yield World(state_path, service, members)
    await service.close()


@pytest.fixture
async def phone(world: World) -> AsyncIterator[TriggerPhone]:
    async with world.phone() as p:
        yield p


def assert_waited(delays: tuple[float, ...], rules: tuple[float, ...]) -> None:
    """Each wait is its rule's delay less the little real time since the wrong PIN."""
    assert len(delays) == len(rules), delays
    for delay, rule in zip(delays, rules, strict=True):
        assert rule - 1.5 < delay <= rule, delays


async def call(
    phone: TriggerPhone, digits: list[str], caller: str = CALLER, **kw: Any
) -> TriggerResult:
    return await phone.call(
        AGENT_NUMBER, digits, caller_number=caller, caller_name="Pförtner", **kw
    )


# -- triggering -----------------------------------------------------------------


async def test_the_right_pin_and_mode_2_post_exactly_one_job(
    world: World, phone: TriggerPhone
) -> None:
    result = await call(phone, [PIN, "2", "1"])

    assert result.outcome is Outcome.POSTED
    assert result.prompts == (P.PIN, P.MENU, P.CONFIRM_ALARM, P.TRIGGERED)
    assert (result.delays, result.attempts, result.notices) == ((), 1, 0)
    [job] = await world.service.poll()
    assert job["id"] == result.job_id
    assert {k: v for k, v in job.items() if k not in ("id", "receivedAt")} == {
        "agentNumber": AGENT_NUMBER,
        "groupId": None,
        "mode": 2,
        "callerNumber": CALLER,
        "callerName": "Pförtner",
        "idempotencyKey": result.idempotency_key,
        "memberStates": {world.members["anna"]: 2, world.members["bernd"]: 8},
        "recordingPath": None,
        "recording": None,
    }
    assert result.idempotency_key.startswith(f"{AGENT_NUMBER}-")


async def test_mode_1_starts_a_test(world: World, phone: TriggerPhone) -> None:
    result = await call(phone, [PIN, "1", "1"])

    assert result.outcome is Outcome.POSTED
    assert result.prompts == (P.PIN, P.MENU, P.CONFIRM_TEST, P.TRIGGERED)
    [job] = await world.service.poll()
    assert (job["id"], job["mode"]) == (result.job_id, 1)


async def test_mode_3_posts_the_recorded_message(world: World, phone: TriggerPhone) -> None:
    audio = wav_bytes(1.5)
    result = await call(phone, [PIN, "3", "1"], recording=audio)

    assert result.outcome is Outcome.POSTED
    assert result.prompts == (P.PIN, P.MENU, P.RECORD, P.RECORD_CHECK, P.TRIGGERED)
    [job] = await world.service.poll()
    assert job["mode"] == 3
    assert job["recording"]["sha256"] == hashlib.sha256(audio).hexdigest()
    assert (await world.service.recording(job["id"])).content == audio


async def test_a_recording_ends_at_60_seconds(world: World, phone: TriggerPhone) -> None:
    result = await call(phone, [PIN, "3", "2", "1"], recording=wav_bytes(75))

    assert result.prompts.count(P.RECORD) == 2  # "2" recorded again
    [job] = await world.service.poll()
    assert job["recording"]["durationMs"] == 60_000


async def test_mode_3_without_a_recording_fails_and_goes_back_to_the_menu(
    world: World, phone: TriggerPhone
) -> None:
    result = await call(phone, [PIN, "3", "*"])

    assert result.prompts.count(P.RECORD_FAILED) == 3
    assert result.outcome is Outcome.CANCELLED
    assert await world.service.poll() == []


async def test_star_cancels_and_posts_nothing(world: World, phone: TriggerPhone) -> None:
    result = await call(phone, [PIN, "*"])

    assert result.outcome is Outcome.CANCELLED
    assert result.prompts[-1] is P.CANCELLED
    assert await world.service.poll() == []


async def test_a_caller_who_stops_pressing_keys_has_hung_up(
    world: World, phone: TriggerPhone
) -> None:
    result = await call(phone, [PIN, "2"])

    assert result.outcome is Outcome.HANGUP
    assert await world.service.poll() == []


# -- PIN ------------------------------------------------------------------------


async def test_a_wrong_pin_then_the_right_one_in_one_call(
    world: World, phone: TriggerPhone
) -> None:
    result = await call(phone, ["1111", PIN, "2", "1"])

    assert result.outcome is Outcome.POSTED
    assert result.prompts == (
        P.PIN, P.PIN_WRONG, P.WAIT, P.PIN, P.MENU, P.CONFIRM_ALARM, P.TRIGGERED,
    )  # fmt: skip
    assert_waited(result.delays, (2,))
    assert len(await world.service.poll()) == 1


async def test_three_wrong_pins_hang_up_and_post_nothing(world: World, phone: TriggerPhone) -> None:
    result = await call(phone, ["1111", "2222", "3333", PIN, "2", "1"])

    assert result.outcome is Outcome.WRONG_PIN_HANGUP
    assert result.prompts.count(P.PIN_WRONG) == 3
    assert result.prompts[-1] is P.GOODBYE
    assert_waited(result.delays, (2, 5))
    assert result.job_id is None
    assert await world.service.poll() == []


async def test_an_empty_entry_uses_a_try_but_is_no_wrong_pin(
    world: World, phone: TriggerPhone
) -> None:
    result = await call(phone, ["", "#", PIN, "2", "1"])

    assert result.prompts.count(P.INVALID) == 2
    assert result.delays == ()
    assert result.outcome is Outcome.POSTED


async def test_the_throttle_slows_the_guesser_and_nobody_else(world: World) -> None:
    attacker, rescuer = "+4917000666", "+4930222"
    scale = 0.05  # 1 s is 50 ms: the second call comes a few ms after the first
    async with world.phone(time_scale=scale) as first:
        guessing = await call(first, ["1111", "2222", "3333"], caller=attacker)
        helped = await call(first, [PIN, "2", "1"], caller=rescuer)
    # Another phone (another process, say) finds the count in the file next to the state.
    assert throttle_path(world.state_path).exists()
    async with world.phone(time_scale=scale) as second:
        again = await call(second, [PIN, "2", "1"], caller=attacker)

    assert_waited(guessing.delays, (2, 5))
    assert (helped.outcome, helped.delays) == (Outcome.POSTED, ())
    assert P.WAIT not in helped.prompts
    assert again.outcome is Outcome.POSTED
    [delay] = again.delays
    assert 5 < delay <= 10  # after the third wrong PIN: 10 s, less what has passed
    assert again.prompts[0] is P.WAIT
    assert len(await world.service.poll()) == 2


async def test_ten_wrong_pins_in_the_window_post_one_notice(
    world: World, phone: TriggerPhone
) -> None:
    callers = ["+49301", "+49302", "+49303", "+49304"]
    results = [await call(phone, ["1", "2", "3"], caller=n) for n in callers]

    assert [r.notices for r in results] == [0, 0, 0, 1]
    [notice] = await world.notices()
    assert {k: v for k, v in notice.items() if k not in ("id", "receivedAt")} == {
        "kind": "wrongPins",
        "agentNumber": AGENT_NUMBER,
        "callerNumber": "+49304",  # whose wrong PIN was the tenth
        "count": 10,
    }
    assert await world.service.poll() == []
    # The group is never locked: the right PIN from a new number goes through at once.
    rescue = await call(phone, [PIN, "2", "1"], caller="+4930999")
    assert (rescue.outcome, rescue.delays) == (Outcome.POSTED, ())


# -- numbers and the job service ------------------------------------------------


@pytest.mark.parametrize("number", ["299", "201"])  # no one, and a person (no agent PIN)
async def test_an_unknown_agent_number_posts_nothing(
    world: World, phone: TriggerPhone, number: str
) -> None:
    result = await phone.call(number, [PIN, "2", "1"], caller_number=CALLER)

    assert (result.outcome, result.prompts, result.job_id) == (Outcome.UNKNOWN_NUMBER, (), None)
    assert await world.service.poll() == []


async def test_an_unreachable_pbx_takes_no_call(world: World, phone: TriggerPhone) -> None:
    SimControl(world.state_path).set_fault(unreachable=True)
    result = await call(phone, [PIN, "2", "1"])

    assert result.outcome is Outcome.PBX_UNREACHABLE
    assert await world.service.poll() == []


async def test_a_job_service_that_stays_down_fails_after_15_seconds_with_one_key(
    world: World,
) -> None:
    bodies: list[bytes] = []

    def down(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        raise httpx.ConnectError("connection refused", request=request)

    async with world.phone(transport=httpx.MockTransport(down)) as phone:
        started = time.monotonic()
        result = await call(phone, [PIN, "2", "1"])
        waited = (time.monotonic() - started) / SCALE

    # Waits of 0.5 1 2 4 4 4 s: 15.5 s, longer than the service wrapper's 5 s restart.
    assert (result.outcome, result.attempts, result.job_id) == (Outcome.POST_FAILED, 7, None)
    assert waited >= 15.5
    assert result.prompts[-3:] == (P.CONFIRM_ALARM, P.WAIT, P.FAILED)
    assert P.TRIGGERED not in result.prompts
    assert len(bodies) == 7 and len(set(bodies)) == 1  # the same body, so the same key


class DownFor(httpx.AsyncBaseTransport):
    """The job service app, refusing connections for its first `seconds` (real time)."""

    def __init__(self, app: httpx.AsyncBaseTransport, seconds: float) -> None:
        self.app = app
        self.up_at = time.monotonic() + seconds
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if time.monotonic() < self.up_at:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.app.handle_async_request(request)


async def test_a_job_service_down_for_8_seconds_still_gets_the_job(world: World) -> None:
    restarting = DownFor(httpx.ASGITransport(app=world.service.app), 8 * SCALE)

    async with world.phone(transport=restarting) as phone:
        result = await call(phone, [PIN, "2", "1"])

    assert result.outcome is Outcome.POSTED
    assert restarting.refused >= 1 and result.attempts == restarting.refused + 1
    assert result.prompts[-3:] == (P.CONFIRM_ALARM, P.WAIT, P.TRIGGERED)
    [job] = await world.service.poll()
    assert job["id"] == result.job_id


async def test_a_lost_answer_is_retried_and_makes_one_job(world: World) -> None:
    app = httpx.ASGITransport(app=world.service.app)

    class LosesFirstAnswer(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.requests = 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await app.handle_async_request(request)
            self.requests += 1
            if self.requests == 1:  # the job service took it, the answer never came
                raise httpx.ReadError("connection reset", request=request)
            return response

    async with world.phone(transport=LosesFirstAnswer()) as phone:
        result = await call(phone, [PIN, "2", "1"])

    assert (result.outcome, result.attempts) == (Outcome.POSTED, 2)
    [job] = await world.service.poll()
    assert job["id"] == result.job_id


async def test_a_refused_token_is_not_retried(world: World) -> None:
    async with world.phone(token=AGENT) as phone:
        result = await call(phone, [PIN, "2", "1"])

    assert (result.outcome, result.attempts) == (Outcome.POST_FAILED, 1)
    assert await world.service.poll() == []


# -- the command ----------------------------------------------------------------


async def test_the_command_places_a_call_against_a_real_job_service(tmp_path: Path) -> None:
    state_path = tmp_path / "swyx-sim.json"
    await make_pbx(state_path)
    (tmp_path / "js").mkdir()
    jobservice = await asyncio.to_thread(JobService(tmp_path / "js").start)
    message = tmp_path / "message.wav"
    message.write_bytes(wav_bytes(1))
    env = clean_env(
        RUNDRUF_AGENT_SIM_STATE=str(state_path),
        RUNDRUF_AGENT_JOBSERVICE_URL=jobservice.url,
        RUNDRUF_JOBSERVICE_ROUTING_TOKEN=ROUTING,
    )

    def sim_call(*args: str, **env_changes: str) -> subprocess.CompletedProcess[str]:
        command = [*RUNDRUF, "agent", "sim-call", "--to", AGENT_NUMBER, "--time-scale", "0.01"]
        return subprocess.run(
            [*command, "--from", CALLER, "--name", "Pförtner", *args],
            env={**env, **env_changes},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    try:
        posted = await asyncio.to_thread(
            sim_call, "--digits", f"{PIN},3,1", "--recording", str(message)
        )
        refused = await asyncio.to_thread(sim_call, "--digits", "1111,2222,3333")
        no_token = await asyncio.to_thread(
            sim_call, "--digits", f"{PIN},2,1", RUNDRUF_JOBSERVICE_ROUTING_TOKEN=""
        )
        async with httpx.AsyncClient(base_url=jobservice.url, headers=bearer(AGENT)) as agent:
            jobs = (await agent.get("/jobs")).json()["jobs"]
    finally:
        await asyncio.to_thread(jobservice.kill)

    assert posted.returncode == 0, posted.stderr
    assert "outcome: posted" in posted.stdout
    assert "heard: rundruf_pin.wav, rundruf_menue.wav, rundruf_aufnahme.wav" in posted.stdout
    [job] = jobs
    assert f"job: {job['id']}" in posted.stdout
    assert (job["mode"], job["callerNumber"], job["callerName"]) == (3, CALLER, "Pförtner")
    assert job["recording"]["sha256"] == hashlib.sha256(message.read_bytes()).hexdigest()
    assert refused.returncode == 1
    assert "outcome: wrong_pin_hangup" in refused.stdout and "waited: " in refused.stdout
    assert no_token.returncode == 2
    assert "routing token" in no_token.stderr


# -- pure pieces ----------------------------------------------------------------

RULES = ThrottleRules()


def test_the_delay_grows_per_wrong_pin_and_is_capped() -> None:
    throttle = AgentThrottle()
    waits = []
    for n in range(8):
        throttle.record_wrong("a", 1000.0 * n, RULES)
        waits.append(throttle.wait("a", 1000.0 * n, RULES))
    assert waits == [2, 5, 10, 20, 30, 60, 60, 60]
    assert throttle.wait("b", 7000.0, RULES) == 0


def test_an_hour_without_a_wrong_pin_forgets_the_caller() -> None:
    throttle = AgentThrottle()
    for _ in range(3):
        throttle.record_wrong("a", 0.0, RULES)
    assert throttle.wait("a", 3600.0, RULES) == 0
    throttle.record_wrong("a", 3601.0, RULES)
    assert throttle.wait("a", 3601.0, RULES) == 2


def test_a_failed_notice_is_released_for_the_next_wrong_pin() -> None:
    throttle = AgentThrottle()
    claims = [throttle.record_wrong(f"c{n}", float(n), RULES) for n in range(10)]
    assert claims[:9] == [None] * 9
    claim = claims[9]
    assert claim is not None and claim.count == 10
    assert throttle.record_wrong("c10", 10.0, RULES) is None  # claimed: one per window
    throttle.release(claim)
    again = throttle.record_wrong("c11", 11.0, RULES)
    assert again is not None and again.count == 12


def test_wrong_pins_spread_wider_than_the_window_make_no_notice() -> None:
    throttle = AgentThrottle()
    assert all(throttle.record_wrong(f"c{n}", 120.0 * n, RULES) is None for n in range(12))


def test_the_rules_scale_with_the_time_scale() -> None:
    scaled = RULES.scaled(0.01)
    assert scaled.delays[-1] == pytest.approx(0.6)
    assert (scaled.notice_window_s, scaled.forget_s) == pytest.approx((6, 36))
    assert scaled.notice_threshold == 10


def test_the_idempotency_key_keeps_to_the_job_services_alphabet() -> None:
    key = idempotency_key("231", "call/ä 1" + "x" * 200, 1_700_000_000.7)
    assert key.startswith("231-call___1") and key.endswith("-1700000000")
    assert len(key) == 128


def test_a_recording_too_short_or_unreadable_is_kept_as_it_is() -> None:
    short = wav_bytes(2)
    assert cut_recording(short, 60) is short
    assert cut_recording(b"not a wav", 60) == b"not a wav"
    assert base64.b64encode(cut_recording(wav_bytes(3), 1)) == base64.b64encode(wav_bytes(1))
