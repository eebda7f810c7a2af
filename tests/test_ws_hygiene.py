"""Who may hold a WebSocket, how many, and how a revoked agent loses its own (issue 14, 6).

Against a real uvicorn server: a socket signs in with connection_init (a session
token, the session cookie, or an installation token) within the configured time,
one client address holds a bounded number of sockets, and a revocation closes
the agent's socket with 4403 and one info line, no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from api.runtime import Runtime
from tests.test_graphql_protections import (
    GTWS,
    graphql_ws,
    operation,
    recv_json,
    running_server,
)
from tests.test_request_hygiene import closed_with, no_traceback


@pytest.fixture
def serve(rt: Runtime) -> Iterator[Callable[..., str]]:
    """Real uvicorn servers on demand (as in test_graphql_protections)."""
    with contextlib.ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(running_server(**overrides))


@pytest.fixture
def server(serve: Callable[..., str]) -> str:
    return serve()


AGENT_COMMANDS = "subscription { agentCommands { id } }"


async def init(ws: ClientConnection, payload: object) -> None:
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))


async def test_a_socket_without_connection_init_closes_with_4408_in_time(serve, world):
    host = serve(ws_init_timeout_seconds=0.5)
    async with connect(f"ws://{host}/graphql", subprotocols=[GTWS]) as ws:
        started = asyncio.get_running_loop().time()
        assert await closed_with(ws) == 4408
        assert asyncio.get_running_loop().time() - started < 3


@pytest.mark.parametrize("payload", [{}, {"authorization": ""}, {"authorization": "Bearer "}])
async def test_a_connection_init_without_a_token_is_refused_with_4403(server, world, payload):
    async with connect(f"ws://{server}/graphql", subprotocols=[GTWS]) as ws:
        await init(ws, payload)
        assert await closed_with(ws) == 4403


async def test_the_session_cookie_signs_the_socket_in(server, world):
    cookie = {"Cookie": f"rundruf_session={world.tokens['owner']}"}
    async with connect(
        f"ws://{server}/graphql", subprotocols=[GTWS], additional_headers=cookie
    ) as ws:
        await init(ws, {})
        assert (await recv_json(ws))["type"] == "connection_ack"
        received = await operation(ws, "{ me { email } }")
    assert received[0]["payload"]["data"]["me"]["email"] == world.a.admin_email


async def test_an_installation_token_signs_the_socket_in(server, world):
    async with graphql_ws(server, world.tokens["agent_a"]):
        pass


async def test_sockets_per_client_address_are_capped(serve, world):
    host = serve(ws_max_per_client=3)
    token = world.tokens["owner"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(graphql_ws(host, token))
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://{host}/graphql", subprotocols=[GTWS]):
                pass
        assert refused.value.response.status_code == 429
    # Closed sockets give their places back.
    async with graphql_ws(host, token) as ws:
        received = await operation(ws, "{ me { email } }")
    assert received[0]["payload"]["data"]["me"]["email"] == world.a.admin_email


@contextlib.asynccontextmanager
async def agent_stream(host: str, token: str) -> AsyncIterator[ClientConnection]:
    async with graphql_ws(host, token) as ws:
        await ws.send(
            json.dumps({"id": "c", "type": "subscribe", "payload": {"query": AGENT_COMMANDS}})
        )
        yield ws


async def post(c: httpx.AsyncClient, token: str, query: str, **variables: str) -> dict[str, Any]:
    response = await c.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    body: dict[str, Any] = response.json()
    return body


async def test_a_revoked_installation_loses_its_socket_with_one_info_line(server, world, caplog):
    caplog.set_level(logging.INFO)
    async with (
        agent_stream(server, world.tokens["agent_a"]) as ws,
        httpx.AsyncClient(base_url=f"http://{server}") as c,
    ):
        # A command reaches the stream, so the stream listens for the revocation.
        await post(c, world.tokens["owner"], "mutation { syncDirectory { id } }")
        assert (await recv_json(ws))["type"] == "next"
        revoked = await post(
            c,
            world.tokens["platform"],
            "mutation($id: ID!) { revokeInstallation(id: $id) { id } }",
            id=str(world.a.installation_id),
        )
        assert revoked["data"]["revokeInstallation"]["id"]
        assert await closed_with(ws) == 4403
    await asyncio.sleep(0.3)  # the server's side of the close runs on
    no_traceback(caplog)
    lines = [r for r in caplog.records if "revoked" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (logging.INFO, f"installation {world.a.installation_id} revoked: closing its socket")
    ]
