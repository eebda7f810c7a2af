"""Who may hold a WebSocket, how many, and how a revoked agent loses its own (issue 14, 6).

Against a real uvicorn server: a socket signs in with connection_init (a session
token, the session cookie, or an installation token) within the configured time,
one client address holds a bounded number of signed-in sockets (sockets that
never sign in cannot lock it out), a revocation closes the agent's socket with
4403 and one info line, no traceback, a signed-out user's idle socket closes with
4401, an operation that cannot run gets an ``error`` message, and pings are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.runtime import Runtime
from tests.test_graphql_protections import (
    GTWS,
    graphql_ws,
    operation,
    recv_json,
    running_server,
)
from tests.test_request_hygiene import close_frame, closed_with, no_traceback


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


async def test_sockets_per_client_address_are_capped(serve, world, caplog):
    caplog.set_level(logging.INFO)
    host = serve(ws_max_per_client=3)
    token = world.tokens["owner"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(graphql_ws(host, token))
        for _ in range(2):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://{host}/graphql", subprotocols=[GTWS]):
                    pass
            response = refused.value.response
            assert response.status_code == 429
            # The refusal is an HTTP answer like any other: with the security headers.
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    # Closed sockets give their places back.
    async with graphql_ws(host, token) as ws:
        received = await operation(ws, "{ me { email } }")
    assert received[0]["payload"]["data"]["me"]["email"] == world.a.admin_email
    # Two refusals within a minute: one line.
    refusals = [r for r in caplog.records if "refused a WebSocket" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.INFO]


def from_address(host: str, source: str) -> socket.socket:
    """A TCP connection to the test server from another loopback address."""
    address, port = host.rsplit(":", 1)
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((address, int(port)))
    return sock


async def test_sockets_that_never_sign_in_do_not_lock_out_the_agent(serve, world):
    """Twenty sockets that never send connection_init, from the agent's address:
    the agent still connects at once, and they hold no signed-in place."""
    host = serve(ws_max_per_client=3)
    source = "127.0.0.23"
    url = f"ws://{host}/graphql"
    async with contextlib.AsyncExitStack() as stack:
        squatters = [
            await stack.enter_async_context(
                connect(url, subprotocols=[GTWS], sock=from_address(host, source))
            )
            for _ in range(20)
        ]
        late = await stack.enter_async_context(
            connect(url, subprotocols=[GTWS], sock=from_address(host, source))
        )
        for _ in range(3):
            await stack.enter_async_context(
                graphql_ws(host, world.tokens["owner"], sock=from_address(host, source))
            )
        agent = {"Authorization": f"Bearer {world.tokens['agent_a']}"}  # as channel.py
        ws = await stack.enter_async_context(
            graphql_ws(
                host,
                world.tokens["agent_a"],
                sock=from_address(host, source),
                additional_headers=agent,
            )
        )
        received = await operation(ws, "{ __typename }")
        assert received[0]["payload"]["data"] == {"__typename": "Query"}
        # The oldest squatters were pushed out to make room (4408), not the agent.
        assert await closed_with(squatters[0]) == 4408
        # A fourth user's socket from there is one too many, refused at sign-in.
        await init(late, {"authorization": f"Bearer {world.tokens['owner']}"})
        assert await close_frame(late) == (4429, "too many open WebSockets from this address")


async def test_an_agent_gets_in_while_squatters_reconnect_as_fast_as_they_can(serve, world):
    """Thirty sockets from the agent's address that never sign in and reconnect the
    moment they are closed could push out an agent's socket before its
    connection_init is read; the agent's token on the handshake makes its socket
    signed in at once (edge_agent/channel.py sends it there too)."""
    host = serve(ws_max_per_client=3)
    source = "127.0.0.24"
    url = f"ws://{host}/graphql"
    stop = asyncio.Event()

    async def squat() -> None:
        while not stop.is_set():
            try:
                async with connect(url, subprotocols=[GTWS], sock=from_address(host, source)) as ws:
                    with contextlib.suppress(ConnectionClosed):
                        await ws.recv()
            except (InvalidStatus, OSError, ConnectionClosed):
                await asyncio.sleep(0.01)

    squatters = [asyncio.create_task(squat()) for _ in range(30)]
    token = world.tokens["agent_a"]
    handshake = {"Authorization": f"Bearer {token}"}
    try:
        await asyncio.sleep(0.5)
        for _ in range(5):
            async with graphql_ws(
                host, token, sock=from_address(host, source), additional_headers=handshake
            ) as ws:
                received = await operation(ws, "{ __typename }")
            assert received[0]["payload"]["data"] == {"__typename": "Query"}
    finally:
        stop.set()
        for task in squatters:
            task.cancel()
        await asyncio.gather(*squatters, return_exceptions=True)


async def test_a_handshake_token_counts_against_the_limit_at_once(serve, world):
    host = serve(ws_max_per_client=2)
    token = world.tokens["owner"]
    handshake = {"Authorization": f"Bearer {token}"}
    url = f"ws://{host}/graphql"
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):  # open, not yet signed in with connection_init
            await stack.enter_async_context(
                connect(url, subprotocols=[GTWS], additional_headers=handshake)
            )
        with pytest.raises(InvalidStatus) as refused:
            await stack.enter_async_context(connect(url, subprotocols=[GTWS]))
        assert refused.value.response.status_code == 429
    # A forged token on the handshake is no more than no token.
    forged = {"Authorization": "Bearer rda_forged"}
    async with connect(url, subprotocols=[GTWS], additional_headers=forged) as ws:
        await init(ws, {"authorization": f"Bearer {token}"})
        assert (await recv_json(ws))["type"] == "connection_ack"


async def test_users_filling_the_agents_address_do_not_lock_the_agent_out(serve, world):
    """Review: fifty signed-in website sockets behind the agent's NAT took every
    place of the address; the agent was refused with 429 and no command reached
    it. An agent's sockets count against its installation instead."""
    host = serve(ws_max_per_client=50)
    source = "127.0.0.25"
    url = f"ws://{host}/graphql"
    token = world.tokens["agent_a"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(50):
            await stack.enter_async_context(
                graphql_ws(host, world.tokens["owner"], sock=from_address(host, source))
            )
        with pytest.raises(InvalidStatus) as refused:  # the address is full for users
            await stack.enter_async_context(
                connect(url, subprotocols=[GTWS], sock=from_address(host, source))
            )
        assert refused.value.response.status_code == 429
        agent = await stack.enter_async_context(
            graphql_ws(
                host,
                token,
                sock=from_address(host, source),
                additional_headers={"Authorization": f"Bearer {token}"},
            )
        )
        await agent.send(
            json.dumps({"id": "c", "type": "subscribe", "payload": {"query": AGENT_COMMANDS}})
        )
        async with httpx.AsyncClient(base_url=f"http://{host}") as c:
            await post(c, world.tokens["owner"], "mutation { syncDirectory { id } }")
        message = await recv_json(agent)
        assert (message["id"], message["type"]) == ("c", "next")


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
        # A second stream on the same socket hears the revocation too.
        await ws.send(
            json.dumps({"id": "d", "type": "subscribe", "payload": {"query": AGENT_COMMANDS}})
        )
        # A command reaches both streams, so both listen for the revocation.
        await post(c, world.tokens["owner"], "mutation { syncDirectory { id } }")
        assert {(await recv_json(ws))["id"] for _ in range(2)} == {"c", "d"}
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
        (logging.INFO, f"installation {world.a.installation_id} revoked: closed its socket")
    ]


async def test_a_signed_out_users_idle_socket_closes_with_4401(server, world, monkeypatch):
    import api.app

    monkeypatch.setattr(api.app, "SESSION_RECHECK_SECONDS", 0.2)
    async with (
        httpx.AsyncClient(base_url=f"http://{server}") as c,
        graphql_ws(server, world.tokens["agent_a"]) as agent,
    ):
        token = world.tokens["owner"]
        async with graphql_ws(server, token) as ws:
            await post(c, token, "mutation { logout }")
            assert await close_frame(ws) == (4401, "signed out")
        # An agent's socket is no user session: it stays.
        received = await operation(agent, "{ __typename }")
        assert received[0]["payload"]["data"] == {"__typename": "Query"}


UNRUNNABLE = {
    "syntax error": {"query": "{"},
    "garbage": {"query": "%%%"},
    "empty query": {"query": ""},
    "long syntax error": {"query": "{ " + "a" * 300 + " "},
    "unknown operationName": {
        "query": "subscription { commandUpdated { id } }",
        "operationName": "nope",
    },
    "long unknown operationName": {"query": "{ __typename }", "operationName": "€" * 300},
}


@pytest.mark.parametrize("payload", UNRUNNABLE.values(), ids=UNRUNNABLE.keys())
async def test_an_operation_that_cannot_run_gets_an_error_message(server, world, caplog, payload):
    async with graphql_ws(server, world.tokens["owner"]) as ws:
        await ws.send(json.dumps({"id": "x", "type": "subscribe", "payload": payload}))
        answer = await recv_json(ws)
        assert (answer["type"], answer["id"]) == ("error", "x"), answer
        (error,) = answer["payload"]
        assert error["extensions"]["code"] in ("GRAPHQL_VALIDATION_FAILED", "BAD_REQUEST")
        assert error["message"] != "Unexpected error."
        # The socket goes on, and the id is free again.
        received = await operation(ws, "{ me { email } }")
    assert received[0]["payload"]["data"]["me"]["email"] == world.a.admin_email
    no_traceback(caplog)


async def test_a_ping_flood_closes_the_socket_with_4429(server, world):
    async with graphql_ws(server, world.tokens["owner"]) as ws:
        for _ in range(200):
            await ws.send(json.dumps({"type": "ping"}))
        code, reason = await close_frame(ws)
    assert (code, reason) == (4429, "too many pings")


async def test_pings_at_a_normal_pace_are_answered(server, world):
    async with graphql_ws(server, world.tokens["owner"]) as ws:
        for _ in range(10):
            await ws.send(json.dumps({"type": "ping"}))
            assert (await recv_json(ws))["type"] == "pong"
