"""Malformed GraphQL requests get a reason, never a 500 or an abnormal close (issue 14, 4).

Over HTTP: a body that is no JSON object, nests deeper than the limit, is not
UTF-8 or comes with another content type answers 400 with a coded GraphQL error.
Over graphql-transport-ws the same payloads close the socket with 4400, and the
log holds no traceback; other sockets go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.runtime import Runtime
from tests.test_graphql_protections import (
    GTWS,
    WS_TIMEOUT,
    graphql_ws,
    operation,
    running_server,
)


@pytest.fixture
def serve(rt: Runtime) -> Iterator[Callable[..., str]]:
    """Real uvicorn servers on demand (as in test_graphql_protections)."""
    with contextlib.ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(running_server(**overrides))


@pytest.fixture
def server(serve: Callable[..., str]) -> str:
    return serve()


TYPENAME = b'{"query": "{ __typename }"}'
DEEP = b"[" * 20_000 + b"]" * 20_000

MALFORMED_BODIES: dict[str, tuple[bytes, str]] = {
    "bare string": (b'"{ __typename }"', "must be a JSON object"),
    "number": (b"42", "must be a JSON object"),
    "null": (b"null", "must be a JSON object"),
    "true": (b"true", "must be a JSON object"),
    "batch while batching is off": (b"[" + TYPENAME + b"]", "Batching is not enabled"),
    "20,000 levels deep": (DEEP, "nested deeper than 64 levels"),
    "deep variables": (
        b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * 500 + b"]" * 500 + b"}}",
        "nested deeper than 64 levels",
    ),
    "invalid UTF-8": (b'{"query": "{ __typename \xff\xfe }"}', "not valid UTF-8"),
    "UTF-16": ('{"query": "{ __typename }"}'.encode("utf-16"), "not valid UTF-8"),
    "broken JSON": (b'{"query": ', "not valid JSON"),
}


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [r.getMessage() for r in noisy]


def bad_request(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    message: str = error["message"]
    return message


@pytest.mark.parametrize(("body", "reason"), MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
async def test_a_malformed_body_gets_400_with_a_reason(client, world, caplog, body, reason):
    caplog.set_level(logging.DEBUG)
    response = await client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert reason in bad_request(response)
    no_traceback(caplog)
    refusals = [r for r in caplog.records if "refused a GraphQL request" in r.getMessage()]
    assert len(refusals) == 1


async def test_another_content_type_gets_400_as_json(client, world):
    response = await client.post(
        "/graphql", content=TYPENAME, headers={"Content-Type": "text/plain"}
    )
    assert bad_request(response) == "Unsupported content type"


async def test_nesting_within_the_limit_is_read(client, world):
    """The positive twin: the limit counts brackets outside strings only."""
    variables = b"[" * 60 + b"]" * 60
    query = b'"{ __typename } # ' + b"[{" * 5000 + b'"'
    body = b'{"query": ' + query + b', "variables": {"v": ' + variables + b"}}"
    response = await client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"__typename": "Query"}


def test_the_depth_scan_ignores_brackets_in_strings_and_escapes():
    from api.http import json_guard

    assert json_guard.depth(b'{"a": "[[[\\"[[", "b": [[1]]}') == 3
    assert json_guard.depth(DEEP) == 20_000
    assert json_guard.depth(DEEP, stop_above=64) == 65
    assert json_guard.loads(b'{"a": "\\u00e4 [["}') == {"a": "ä [["}


async def test_a_deep_body_gets_400_from_the_real_server(server, world, caplog):
    async with httpx.AsyncClient(base_url=f"http://{server}") as c:
        response = await c.post(
            "/graphql", content=DEEP, headers={"Content-Type": "application/json"}
        )
        assert "nested deeper" in bad_request(response)
        # The server goes on.
        ok = await c.post(
            "/graphql", content=TYPENAME, headers={"Content-Type": "application/json"}
        )
    assert ok.json() == {"data": {"__typename": "Query"}}
    no_traceback(caplog)


# --------------------------------------------------------------------------- WebSocket

SUBSCRIBE = {"id": "1", "type": "subscribe"}
MALFORMED_FRAMES: dict[str, str] = {
    "bare string": json.dumps("subscribe"),
    "number": "42",
    "null": "null",
    "array": "[]",
    "type not a string": json.dumps({"type": 5}),
    "subscribe without id": json.dumps({"type": "subscribe", "payload": {"query": "{ a }"}}),
    "id not a string": json.dumps({**SUBSCRIBE, "id": ["1"], "payload": {"query": "{ a }"}}),
    "payload a number": json.dumps({**SUBSCRIBE, "payload": 5}),
    "payload a string": json.dumps({**SUBSCRIBE, "payload": "{ __typename }"}),
    "query not a string": json.dumps({**SUBSCRIBE, "payload": {"query": 5}}),
    "variables a list": json.dumps({**SUBSCRIBE, "payload": {"query": "{ a }", "variables": []}}),
    "operationName a number": json.dumps(
        {**SUBSCRIBE, "payload": {"query": "{ a }", "operationName": 1}}
    ),
    "complete with a number id": json.dumps({"type": "complete", "id": 1}),
    "20,000 levels deep": DEEP.decode(),
    "deep inside a message": json.dumps({**SUBSCRIBE, "payload": {"query": "{ a }"}})[:-1]
    + ', "x": '
    + "[" * 1000
    + "]" * 1000
    + "}",
    "broken JSON": '{"type": ',
}


async def closed_with(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(WS_TIMEOUT):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


@pytest.mark.parametrize("frame", MALFORMED_FRAMES.values(), ids=MALFORMED_FRAMES.keys())
async def test_a_malformed_frame_closes_with_4400_and_others_go_on(server, world, caplog, frame):
    token = world.tokens["owner"]
    async with graphql_ws(server, token) as bystander, graphql_ws(server, token) as ws:
        await ws.send(frame)
        assert await closed_with(ws) == 4400
        received = await operation(bystander, "{ me { email } }")
    assert received[0]["payload"]["data"]["me"]["email"] == world.a.admin_email
    no_traceback(caplog)


async def test_a_malformed_frame_before_connection_init_closes_with_4400(server, world, caplog):
    async with connect(f"ws://{server}/graphql", subprotocols=[GTWS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": 5}))
        assert await closed_with(ws) == 4400
    async with connect(f"ws://{server}/graphql", subprotocols=[GTWS]) as ws:
        await ws.send("null")
        assert await closed_with(ws) == 4400
    no_traceback(caplog)


async def test_a_text_frame_of_invalid_utf8_closes_with_1007(server, world, caplog):
    async with graphql_ws(server, world.tokens["owner"]) as ws:
        await ws.send(b'{"type": "ping", "x": "\xff"}', text=True)
        assert await closed_with(ws) == 1007
    no_traceback(caplog)
