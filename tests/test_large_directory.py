"""A PBX directory of 50,000 users reaches the mirror (issue 14, point 1, review point 5):
the agent sends a large result gzip-encoded, the central service takes an enrolled agent's
body up to 16 MiB (inflated; api/http/agent_bodies.py) and applies it in bulk. Anyone
else's body stays bound by the common 256 KiB, gzip or not, and an agent's body over its
bound is a clean 413 the agent reads as a final refusal with a reason users may read."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.app import create_app
from api.models import Command, CommandStatus, PbxUser
from edge_agent.config import Enrolment
from edge_agent.errors import ServerRefused
from edge_agent.outcomes import refused_outcome
from edge_agent.server import Server
from tests.test_agent_service import create_group, world_directory

USERS = 50_000


def _server(rt, token: str) -> Server:
    server = Server(Enrolment("https://testserver", "inst", token), verify_tls=True)
    transport = httpx.ASGITransport(app=create_app(rt), client=("198.51.100.7", 40000))
    server._client = httpx.AsyncClient(transport=transport, timeout=120)
    return server


def _directory(users: int) -> dict[str, Any]:
    directory = world_directory()
    directory["users"] += [
        {
            "id": f"m{i}",
            "name": f"Mitarbeiterin Nummer {i}",
            "extension": str(100000 + i),
            "description": f"Abteilung {i % 40}, Standort Nord",
            "state": i % 9,
            "callroutingOnly": False,
        }
        for i in range(users)
    ]
    return directory


async def _user_count(rt, tenant_id) -> int:
    async with rt.db.reading() as s:
        count = await s.scalar(
            select(func.count()).select_from(PbxUser).where(PbxUser.tenant_id == tenant_id)
        )
    return int(count or 0)


async def test_a_directory_of_50000_users_reaches_the_mirror(gql, rt, world) -> None:
    directory = _directory(USERS)
    assert len(json.dumps({"directory": directory})) > 7_000_000  # far over 256 KiB
    server = _server(rt, world.tokens["agent_a"])
    for _ in range(2):  # new rows first, then an update of every one
        command_id = await create_group(gql, world.tokens["owner"])
        await server.complete(command_id, True, {"directory": directory}, None)
        async with rt.db.reading() as s:
            command = await s.get(Command, uuid.UUID(command_id))
            assert command is not None and command.status is CommandStatus.SUCCEEDED
        assert await _user_count(rt, world.a.tenant_id) == USERS + 4
    await server.aclose()


async def test_only_an_enrolled_agent_may_send_a_large_or_gzip_body(client, world) -> None:
    body = json.dumps({"query": "{ __typename }", "variables": {"pad": "x" * 300_000}}).encode()
    for token in (None, "rda_not-a-real-token", world.tokens["owner"]):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await client.post("/graphql", content=body, headers=headers)
        assert response.status_code == 413, (token, response.text)
        zipped = {**headers, "Content-Encoding": "gzip"}
        response = await client.post("/graphql", content=gzip.compress(body), headers=zipped)
        assert response.status_code in (400, 413), (token, response.text)
    agent = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {world.tokens['agent_a']}",
    }
    response = await client.post("/graphql", content=body, headers=agent)
    assert response.status_code == 200, response.text


async def test_a_zip_bomb_from_an_agent_is_refused_unread(client, world) -> None:
    bomb = gzip.compress(b" " * (17 * 1024 * 1024))  # 17 MiB of spaces, 17 KB zipped
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Authorization": f"Bearer {world.tokens['agent_a']}",
    }
    response = await client.post("/graphql", content=bomb, headers=headers)
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_413_is_a_final_refusal_in_words_without_the_address(rt, world) -> None:
    server = _server(rt, world.tokens["agent_a"])
    too_large = {"directory": {"users": [], "pad": "x" * (17 * 1024 * 1024)}}
    with pytest.raises(ServerRefused) as refused:
        await server.complete(str(uuid.uuid4()), True, too_large, None)
    assert "testserver" not in refused.value.public
    outcome = refused_outcome(refused.value)
    assert outcome.error is not None and "more than the central service takes" in outcome.error
    assert "testserver" not in outcome.error and "http" not in outcome.error.lower()
    await server.aclose()
