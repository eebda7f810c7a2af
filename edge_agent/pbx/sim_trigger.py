"""The caller's side of a trigger call on the SwyxWare simulator.

Plays the flow of swyx_jobservice/callrouting/rundruf.lua against the simulator
state and the real job service: the agent number (the extension of a user with
an agent PIN), the PIN (3 tries per call, the per-caller throttle of
`sim_throttle`, a notice after 10 wrong PINs for the group), the menu (1 test,
2 alarm, 3 alarm with a message recorded now, * cancel), the confirmation, and
POST /jobs with one idempotency key, retried for 15 s (the caller hears
"please wait" once). The caller's keys come as one entry per question; when
they run out, the caller hangs up.
Waits are realistic seconds times `time_scale`, as in the simulated dialer.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from edge_agent.pbx.errors import PbxError
from edge_agent.pbx.sim_callflow import (
    PIN_END,
    PIN_MAX_DIGITS,
    PIN_TRIES,
    STOP_MODE,
    Dialogue,
    Outcome,
    Prompt,
    idempotency_key,
    is_permanent,
    member_states,
    post_waits,
)
from edge_agent.pbx.sim_state import SimState, SimUser, StateFile
from edge_agent.pbx.sim_throttle import AgentThrottle, ThrottleFile, ThrottleRules

__all__ = ["Outcome", "Prompt", "TriggerPhone", "TriggerResult", "place_trigger_call"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class TriggerResult:
    outcome: Outcome
    job_id: str | None
    prompts: tuple[Prompt, ...]  # what the caller heard, in order
    delays: tuple[float, ...]  # throttle waits before PIN tries, in simulated seconds
    attempts: int = 0  # POST /jobs attempts
    idempotency_key: str | None = None
    notices: int = 0  # wrong-PIN notices this call sent


class TriggerPhone:
    """Places simulated trigger calls; one HTTP client for all of them."""

    def __init__(
        self,
        state_path: Path,
        jobservice_url: str,
        routing_token: str,
        *,
        time_scale: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.pbx = StateFile(state_path)
        self.throttle = ThrottleFile(state_path)
        self.rules = ThrottleRules().scaled(time_scale)
        self.url = jobservice_url.rstrip("/")
        self.time_scale = time_scale
        self._http = httpx.AsyncClient(
            timeout=10, headers={"Authorization": f"Bearer {routing_token}"}, transport=transport
        )

    async def call(
        self,
        to: str,
        digits: Sequence[str],
        *,
        caller_number: str = "",
        caller_name: str | None = None,
        recording: bytes | None = None,
        call_id: str | None = None,
    ) -> TriggerResult:
        """One call to `to`; `digits` has one entry per question ("" is silence).

        Without `recording` a mode-3 recording fails, as a failed one on the PBX does.
        """
        call = _Call(self, to, Dialogue(digits, recording), caller_number, caller_name)
        return await call.run(call_id or secrets.token_hex(6))

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
        """The job service's answer to a POST; None when it cannot be reached."""
        try:
            return await self._http.post(self.url + path, json=body)
        except httpx.HTTPError as exc:
            log.warning("POST %s failed: %r", path, exc)
            return None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> TriggerPhone:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def place_trigger_call(
    state_path: Path,
    jobservice_url: str,
    routing_token: str,
    to: str,
    digits: Sequence[str],
    *,
    caller_number: str = "",
    caller_name: str | None = None,
    recording: bytes | None = None,
    time_scale: float = 1.0,
) -> TriggerResult:
    """One call with a phone of its own (the CLI's way); see `TriggerPhone.call`."""
    async with TriggerPhone(
        state_path, jobservice_url, routing_token, time_scale=time_scale
    ) as phone:
        return await phone.call(
            to,
            digits,
            caller_number=caller_number,
            caller_name=caller_name,
            recording=recording,
        )


class _Call:
    """One call: the flow of M.run in rundruf.lua, with its I/O."""

    def __init__(
        self,
        phone: TriggerPhone,
        to: str,
        dialogue: Dialogue,
        caller_number: str,
        caller_name: str | None,
    ) -> None:
        self.phone = phone
        self.to = to
        self.dialogue = dialogue
        self.caller = caller_number
        self.caller_name = caller_name or None
        self.delays: list[float] = []
        self.notices = 0

    def result(
        self, outcome: Outcome, job_id: str | None = None, attempts: int = 0, key: str | None = None
    ) -> TriggerResult:
        log.info("trigger call to %s from %r: %s", self.to, self.caller, outcome.value)
        prompts, delays = tuple(self.dialogue.prompts), tuple(self.delays)
        return TriggerResult(outcome, job_id, prompts, delays, attempts, key, self.notices)

    async def run(self, call_id: str) -> TriggerResult:
        try:
            state = await asyncio.to_thread(self.phone.pbx.read)
        except (OSError, PbxError) as exc:  # no state file is a PBX that is not there
            log.warning("the simulated PBX cannot take the call: %r", exc)
            return self.result(Outcome.PBX_UNREACHABLE)
        if state.faults.unreachable:
            return self.result(Outcome.PBX_UNREACHABLE)
        agent = next((u for u in state.users if u.extension == self.to), None)
        if agent is None or agent.agent_pin is None:
            # A person's extension rings that person; only an agent user runs the script.
            return self.result(Outcome.UNKNOWN_NUMBER)
        ended = await self.ask_pin(agent.agent_pin)
        if ended is not None:
            return self.result(ended)
        choice = self.dialogue.choose_mode()
        if isinstance(choice, Outcome):
            return self.result(choice)
        return await self.post_job(state, agent, call_id, *choice)

    # -- PIN -------------------------------------------------------------------

    async def ask_pin(self, pin: str) -> Outcome | None:
        """None when the right PIN came, else how the call ended."""
        say = self.dialogue.play
        for _ in range(PIN_TRIES):
            await self.wait_for_turn()
            say(Prompt.PIN)
            entry = self.dialogue.read(PIN_MAX_DIGITS, PIN_END)
            if entry is None:
                return Outcome.HANGUP
            if hmac.compare_digest(entry.encode(), pin.encode()):
                await self.throttled(lambda t: t.clear(self.caller))
                return None
            if entry == "":
                say(Prompt.INVALID)  # uses a try, is no wrong PIN
            else:
                await self.wrong_pin()
                say(Prompt.PIN_WRONG)
        say(Prompt.GOODBYE)
        return Outcome.WRONG_PIN_HANGUP

    async def wait_for_turn(self) -> None:
        rules = self.phone.rules
        wait = await self.throttled(lambda t: t.wait(self.caller, time.time(), rules))
        if wait:
            self.dialogue.play(Prompt.WAIT)
            self.delays.append(wait / self.phone.time_scale)
            await asyncio.sleep(wait)

    async def wrong_pin(self) -> None:
        rules = self.phone.rules
        claim = await self.throttled(lambda t: t.record_wrong(self.caller, time.time(), rules))
        if claim is None:
            return
        notice = {
            "kind": "wrongPins",
            "agentNumber": self.to,
            "callerNumber": self.caller,
            "count": claim.count,
        }
        response = await self.phone.post("/notices", notice)
        if response is not None and response.is_success:
            self.notices += 1
            return
        log.warning("could not send the wrong-PIN notice; the next wrong PIN tries again")
        await self.throttled(lambda t: t.release(claim))

    async def throttled(self, change: Callable[[AgentThrottle], T]) -> T | None:
        # Best effort, as in the script: without its file the call goes on unthrottled.
        try:
            return await asyncio.to_thread(self.phone.throttle.update, self.to, change)
        except OSError as exc:
            log.warning("the wrong-PIN throttle failed, going on without it: %r", exc)
            return None

    # -- the job ---------------------------------------------------------------

    async def post_job(
        self, state: SimState, agent: SimUser, call_id: str, mode: int, audio: bytes | None
    ) -> TriggerResult:
        with suppress(OSError, PbxError):
            # The members' states as they are now, when the script would send them.
            state = await asyncio.to_thread(self.phone.pbx.read)
        key = idempotency_key(self.to, call_id, time.time())
        body = {
            "agentNumber": self.to,
            "groupId": None,
            "mode": mode,
            "callerNumber": self.caller,
            "callerName": self.caller_name,
            "idempotencyKey": key,
            "recording": None if audio is None else base64.b64encode(audio).decode("ascii"),
            "recordingPath": None,
            "memberStates": None if mode == STOP_MODE else member_states(state, agent),
        }
        job_id, attempt = None, 0
        for wait in (*post_waits(), None):
            attempt += 1
            response = await self.phone.post("/jobs", body)
            job_id = _job_id(response)
            status = None if response is None else response.status_code
            if job_id is not None:
                break
            log.warning("POST /jobs attempt %d: %s", attempt, status or "unreachable")
            if wait is None or (status is not None and is_permanent(status)):
                break
            if attempt == 1:  # a restarting job service: tell the caller, once
                self.dialogue.play(Prompt.WAIT)
            await asyncio.sleep(wait * self.phone.time_scale)
        done = Prompt.STOPPED if mode == STOP_MODE else Prompt.TRIGGERED
        self.dialogue.play(done if job_id else Prompt.FAILED)
        outcome = Outcome.POSTED if job_id else Outcome.POST_FAILED
        return self.result(outcome, job_id, attempt, key)


def _job_id(response: httpx.Response | None) -> str | None:
    """The id of an accepted job (201 new, 200 a repeat of its key), else None."""
    if response is None or response.status_code not in (200, 201):
        return None
    try:
        job_id = response.json()["id"]
    except (ValueError, KeyError, TypeError):
        return None  # not the job service's answer
    return job_id if isinstance(job_id, str) else None
