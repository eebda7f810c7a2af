"""No outcome holds up the commands after it (issue 14, point 1): the agent service
against a stand-in for the central GraphQL endpoint (a tiny Starlette app) that fails,
refuses or takes each `completeCommand` as a test scripts it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge_agent.config import Enrolment
from edge_agent.ledger import Outcome
from edge_agent.pbx.errors import PbxRefused
from edge_agent.pbx.sim import SimControl, SimPbx
from edge_agent.service import AgentService
from edge_agent.settings import AgentSettings

Answer = Callable[[dict[str, Any]], Response]


def taken(variables: dict[str, Any]) -> Response:
    status = "SUCCEEDED" if variables["ok"] else "FAILED"
    return JSONResponse({"data": {"completeCommand": {"id": variables["id"], "status": status}}})


def internal_error(variables: dict[str, Any]) -> Response:
    error = {"message": "Unexpected error.", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    return JSONResponse({"data": None, "errors": [error]})


def refused(variables: dict[str, Any]) -> Response:
    error = {"message": "bad input", "extensions": {"code": "BAD_USER_INPUT"}}
    return JSONResponse({"data": None, "errors": [error]})


@dataclass
class Central:
    """What the central service was sent, and how it answers each command's outcome."""

    answers: dict[str, list[Answer]] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)

    async def graphql(self, request: Request) -> Response:
        variables = (await request.json())["variables"]
        self.received.append(variables)
        scripted = self.answers.get(variables["id"]) or [taken]
        answer = scripted.pop(0) if len(scripted) > 1 else scripted[0]
        return answer(variables)

    def sent(self, command_id: str) -> list[dict[str, Any]]:
        return [v for v in self.received if v["id"] == command_id]


@pytest.fixture
async def central() -> Central:
    return Central()


@pytest.fixture
async def service(tmp_path: Path, central: Central) -> AsyncIterator[AgentService]:
    control = SimControl(tmp_path / "sim.json")
    control.create()
    settings = AgentSettings(
        pbx="sim",
        dialer="sim",
        state_dir=tmp_path / "agent",
        sim_state=control.state_path,
        backoff_cap_seconds=0.05,
    )
    service = AgentService(
        settings, Enrolment("http://central", "inst-1", "token-1"), SimPbx(control.state_path)
    )
    app = Starlette(routes=[Route("/graphql", central.graphql, methods=["POST"])])
    service.server._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    yield service
    await service.server.aclose()
    service.ledger.close()


def settings_command(command_id: str) -> dict[str, Any]:
    return {"id": command_id, "type": "updateSettings", "payload": {"pollIntervalSeconds": 30}}


async def test_an_outcome_the_server_keeps_failing_holds_up_the_next_command_briefly_only(
    service: AgentService, central: Central
) -> None:
    central.answers["poison"] = [internal_error]
    async with asyncio.timeout(20):  # the old agent retried this forever
        await service.handle(settings_command("poison"))
        await service.handle(settings_command("next"))
    assert 2 <= len(central.sent("poison")) <= 5
    assert [v["ok"] for v in central.sent("next")] == [True]


async def test_a_refused_outcome_is_replaced_once_by_a_failure_with_the_reason(
    service: AgentService, central: Central
) -> None:
    central.answers["refused"] = [refused]  # the failure sent instead is refused, too
    async with asyncio.timeout(20):
        await service.handle(settings_command("refused"))
        await service.handle(settings_command("next"))
    first, instead = central.sent("refused")  # no more: a refusal is never retried
    assert first["ok"] is True
    assert (instead["ok"], instead["result"]) == (False, {})
    assert instead["error"] == (
        "the central service refused the agent's result: BAD_USER_INPUT: bad input"
    )
    assert [v["ok"] for v in central.sent("next")] == [True]


async def test_an_outcome_that_cannot_even_be_encoded_fails_its_command_with_the_reason(
    service: AgentService, central: Central
) -> None:
    poisoned = Outcome(ok=True, result={"extension": "2\ud80001"}, error=None)
    async with asyncio.timeout(20):
        await service._report("surrogate", poisoned)
        await service.handle(settings_command("next"))
    (instead,) = central.sent("surrogate")
    assert instead["ok"] is False
    assert "refused the agent's result" in instead["error"]
    assert [v["ok"] for v in central.sent("next")] == [True]


async def test_a_kept_outcome_is_resent_later_with_the_directory_of_now(
    service: AgentService, central: Central
) -> None:
    central.answers["later"] = [internal_error] * 4 + [taken]
    old = {"directory": {"users": [], "groups": []}, "groupId": "7"}
    fresh = {"directory": {"users": [{"id": "1"}], "groups": []}}

    async def now() -> dict[str, Any]:
        return fresh

    service.outcomes.fresh_directory = now
    async with asyncio.timeout(20):
        await service._report("later", Outcome(ok=True, result=old, error=None))
    assert "later" in service.outcomes.kept
    await service.outcomes.resend()
    last = central.sent("later")[-1]
    assert last["result"] == {"groupId": "7", **fresh}
    assert service.outcomes.kept == {}


async def test_an_error_text_with_a_nul_is_stored_and_sent_cleaned(
    service: AgentService, central: Central
) -> None:
    async def failing(payload: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
        raise PbxRefused("The group 'A\x00\ud800' exists")  # the PBX's words with its text

    service.commands.handlers["updateSettings"] = failing
    await service.handle(settings_command("nul"))
    (sent,) = central.sent("nul")
    json.dumps(sent).encode("utf-8")
    assert sent["error"] == "The group 'A\ufffd\ufffd' exists"
    stored = service.ledger.get("nul")
    assert stored is not None and stored.error == sent["error"]


async def test_a_command_that_never_finishes_is_stopped_and_the_next_one_runs(
    service: AgentService, central: Central, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.command_timeout = 0.2

    async def hangs(payload: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()  # a PBX that never answers
        return {}

    service.commands.handlers["syncDirectory"] = hangs
    async with asyncio.timeout(20):
        await service.handle({"id": "stuck", "type": "syncDirectory", "payload": {}})
        await service.handle(settings_command("next"))
    (stuck,) = central.sent("stuck")
    assert stuck["ok"] is False and "did not finish" in stuck["error"]
    assert [v["ok"] for v in central.sent("next")] == [True]
