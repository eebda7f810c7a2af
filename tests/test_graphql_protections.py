"""The GraphQL endpoint's protections: document limits, transport rules, error masking.

The WebSocket tests run against a real uvicorn server in a thread, started with
the options of ``api.cli.run_server``, so the handshake, subprotocol selection
and frame size limit are those of production rather than of a test transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from graphql import Lexer, Source, TokenKind
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from api.app import GRAPHQL_BODY_LIMIT, create_app
from api.bootstrap import bootstrap
from api.models import Session
from api.runtime import Runtime
from api.services import auth, directory
from tests.conftest import error_codes, make_settings
from tests.world import PASSWORD

SECRET = "secret internal detail"
LOGIN = 'login(email: "admin@owner.example", password: "%s")' % PASSWORD  # noqa: UP031


# --------------------------------------------------------------------------- helpers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def session_count(rt: Runtime) -> int:
    async with rt.db.reading() as s:
        return int(await s.scalar(select(func.count()).select_from(Session)) or 0)


async def post(client: httpx.AsyncClient, query: str, **kwargs: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, **kwargs})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def messages(body: dict[str, Any]) -> list[str]:
    return [e["message"] for e in body.get("errors") or []]


@contextlib.asynccontextmanager
async def app_client(rt: Runtime, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an app whose settings differ from the default ones."""
    custom = dataclasses.replace(rt, settings=make_settings(**overrides))
    transport = httpx.ASGITransport(app=create_app(custom), client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


def nested(depth: int) -> str:
    """`{ me { a { ... { id } } } }` of the given depth (`{ me { id } }` is depth 1)."""
    inner = "id"
    for _ in range(depth - 1):
        inner = f"a {{ {inner} }}"
    return f"{{ me {{ {inner} }} }}"


def count_tokens(document: str) -> int:
    """Tokens as graphql-core's parser counts them for `max_tokens`."""
    lexer = Lexer(Source(document))
    count = 0
    while lexer.advance().kind is not TokenKind.EOF:
        count += 1
    return count


# --------------------------------------------------------------------------- depth


async def test_a_document_deeper_than_ten_is_refused(client, world):
    client.headers.update(bearer(world.tokens["owner"]))
    body = await post(client, nested(11))
    assert body["data"] is None
    assert "'anonymous' exceeds maximum operation depth of 10" in messages(body)
    # Ten levels are within the limit: only the (made-up) fields are wrong then.
    at_limit = await post(client, nested(10))
    assert not any("depth" in m for m in messages(at_limit)), at_limit


DEEP = "{ broadcasts { nodes { attempts { member { name } } } } }"
DEEP_BY_FRAGMENTS = """
query Deep { broadcasts { ...Page } }
fragment Page on BroadcastConnection { nodes { ...Calls } }
fragment Calls on Broadcast { attempts { ... on CallAttempt { member { name } } } }
"""


@pytest.mark.parametrize("deep", [DEEP, DEEP_BY_FRAGMENTS], ids=["fields", "fragments"])
async def test_a_deep_document_executes_nothing_not_even_a_sibling_mutation(rt, world, deep):
    async with app_client(rt, graphql_max_depth=3) as c:
        c.headers.update(bearer(world.tokens["owner"]))
        # Within the limit the same data is there, so the refusal below is the limiter's.
        shallow = await post(c, "{ broadcasts { nodes { attempts { memberName } } } }")
        assert not shallow.get("errors"), shallow
        assert len(shallow["data"]["broadcasts"]["nodes"][0]["attempts"]) == 3

        sessions = await session_count(rt)
        body = await post(
            c, f"mutation Login {{ {LOGIN} {{ token }} }}\n{deep}", operationName="Login"
        )
        assert body["data"] is None
        assert any("exceeds maximum operation depth of 3" in m for m in messages(body)), body
        assert set(error_codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
        assert not c.cookies
        assert await session_count(rt) == sessions


# --------------------------------------------------------------------------- aliases


def aliased(n: int, field: str = "me { id }", prefix: str = "a") -> str:
    return " ".join(f"{prefix}{i}: {field}" for i in range(n))


async def test_more_than_fifteen_aliases_are_refused(client, world):
    client.headers.update(bearer(world.tokens["owner"]))
    body = await post(client, f"{{ {aliased(16)} }}")
    assert body["data"] is None
    assert messages(body) == ["16 aliases found. Allowed: 15"]
    assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]

    fifteen = await post(client, f"{{ {aliased(15)} }}")
    assert not fifteen.get("errors"), fifteen
    assert len(fifteen["data"]) == 15


HIDDEN_ALIASES = {
    "one fragment": f"{{ ...F }} fragment F on Query {{ {aliased(16)} }}",
    "a fragment spread twice": (
        f"{{ ...F ... on Query {{ ...F }} }} fragment F on Query {{ {aliased(8)} }}"
    ),
    "nested fragments": (
        "{ ...Outer } "
        f"fragment Outer on Query {{ {aliased(4, prefix='o')} ...Mid }} "
        f"fragment Mid on Query {{ {aliased(4, prefix='m')} me {{ ...Leaf }} }} "
        f"fragment Leaf on User {{ {aliased(8, 'email', 'e')} }}"
    ),
    "inline fragments": f"{{ ... on Query {{ me {{ ... {{ {aliased(16, 'email')} }} }} }} }}",
}


@pytest.mark.parametrize("document", HIDDEN_ALIASES.values(), ids=HIDDEN_ALIASES.keys())
async def test_aliases_hidden_in_fragments_are_counted(client, world, document):
    client.headers.update(bearer(world.tokens["owner"]))
    body = await post(client, document)
    assert body["data"] is None
    assert messages(body) == ["16 aliases found. Allowed: 15"]


async def test_aliased_mutations_in_a_fragment_are_refused_before_any_runs(client, rt, world):
    sessions = await session_count(rt)
    fragment = " ".join(f"l{i}: {LOGIN} {{ token }}" for i in range(16))
    body = await post(
        client, f"mutation {{ ...Logins }} fragment Logins on Mutation {{ {fragment} }}"
    )
    assert body["data"] is None
    assert messages(body) == ["16 aliases found. Allowed: 15"]
    assert not client.cookies
    assert await session_count(rt) == sessions


# --------------------------------------------------------------------------- tokens


def many_operations(n: int) -> str:
    """`n` small operations: many tokens, and nothing for validation to compare."""
    return "\n".join(f"query Q{i} {{ me {{ id }} }}" for i in range(n))


async def test_a_document_of_more_than_2000_tokens_is_refused_unexecuted(client, rt, world):
    sessions = await session_count(rt)
    document = f"mutation Login {{ {LOGIN} {{ token }} }}\n{many_operations(250)}"
    assert count_tokens(document) > 2000
    response = await client.post("/graphql", json={"query": document, "operationName": "Login"})
    assert response.status_code in (200, 400), response.text
    body = response.json()
    assert body.get("data") is None
    assert messages(body) == [
        "Syntax Error: Document contains more than 2000 tokens. Parsing aborted."
    ]
    assert "set-cookie" not in response.headers
    assert await session_count(rt) == sessions

    # Just under the limit, the same kind of document is executed.
    client.headers.update(bearer(world.tokens["owner"]))
    document = many_operations(249)
    assert 1990 < count_tokens(document) <= 2000
    body = await post(client, document, operationName="Q248")
    assert not body.get("errors"), messages(body)
    assert body["data"]["me"]["id"]


@pytest.mark.parametrize(
    "document", ["{ me {", f"{{ me {{ {'id ' * 2100} }} }}"], ids=["syntax", "tokens"]
)
async def test_syntax_errors_carry_a_code_too(client, world, document):
    client.headers.update(bearer(world.tokens["owner"]))
    response = await client.post("/graphql", json={"query": document})
    assert response.json().get("data") is None
    assert error_codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]


# --------------------------------------------------------------------------- transport


async def test_queries_via_get_are_not_executed(client, world):
    client.headers.update(bearer(world.tokens["owner"]))
    response = await client.get("/graphql", params={"query": "{ me { id email } }"})
    assert 400 <= response.status_code < 500, response.text
    assert world.a.admin_email not in response.text
    assert str(world.a.admin_user_id) not in response.text
    # No GraphiQL page either.
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 404


async def test_mutations_via_get_are_not_executed(client, rt, world):
    sessions = await session_count(rt)
    response = await client.get("/graphql", params={"query": f"mutation {{ {LOGIN} {{ token }} }}"})
    assert 400 <= response.status_code < 500, response.text
    assert "set-cookie" not in response.headers
    assert await session_count(rt) == sessions

    owner = world.tokens["owner"]
    response = await client.get(
        "/graphql", params={"query": "mutation { logout }"}, headers=bearer(owner)
    )
    assert 400 <= response.status_code < 500
    client.headers.update(bearer(owner))
    assert (await post(client, "{ me { email } }"))["data"]["me"]["email"] == world.a.admin_email


LOGIN_DOC = json.dumps({"query": f"mutation {{ {LOGIN} {{ token }} }}"})
NON_JSON_BODIES: dict[str, dict[str, Any]] = {
    "form": {"data": {"query": f"mutation {{ {LOGIN} {{ token }} }}"}},
    "text/plain": {"content": LOGIN_DOC, "headers": {"Content-Type": "text/plain"}},
    "text/plain with a json charset": {
        "content": LOGIN_DOC,
        "headers": {"Content-Type": "text/plain; charset=application/json"},
    },
    "multipart": {
        "data": {"operations": LOGIN_DOC, "map": "{}"},
        "files": {"x": ("x.txt", b"x", "text/plain")},
    },
    "no content type": {"content": LOGIN_DOC},
}


@pytest.mark.parametrize("request_kwargs", NON_JSON_BODIES.values(), ids=NON_JSON_BODIES.keys())
async def test_only_json_bodies_are_executed(client, rt, world, request_kwargs):
    sessions = await session_count(rt)
    response = await client.post("/graphql", **request_kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert "set-cookie" not in response.headers
    assert not client.cookies
    assert await session_count(rt) == sessions


async def test_json_login_sets_the_cookie(client, rt, world):
    """The positive twin of the refusals above: JSON is how login works."""
    sessions = await session_count(rt)
    response = await client.post(
        "/graphql", content=LOGIN_DOC, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["data"]["login"]["token"]
    assert "rundruf_session" in response.headers["set-cookie"]
    assert await session_count(rt) == sessions + 1


async def test_a_body_over_256_kib_gets_413_with_a_json_reason(client, rt, world):
    sessions = await session_count(rt)
    body = LOGIN_DOC.encode() + b" " * GRAPHQL_BODY_LIMIT
    assert GRAPHQL_BODY_LIMIT == 256 * 1024
    response = await client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    # The shape of every refusal at /graphql (a GraphQL error with its code).
    assert response.json() == {
        "errors": [
            {
                "message": f"request body larger than {256 * 1024} bytes",
                "extensions": {"code": "PAYLOAD_TOO_LARGE"},
            }
        ]
    }
    assert "set-cookie" not in response.headers
    assert await session_count(rt) == sessions

    # Just under the limit the same document is executed.
    fits = LOGIN_DOC.encode() + b" " * (GRAPHQL_BODY_LIMIT - len(LOGIN_DOC) - 1)
    response = await client.post(
        "/graphql", content=fits, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["login"]["token"]


async def test_a_streamed_body_over_256_kib_gets_413(server, world):
    async def chunks() -> AsyncIterator[bytes]:
        yield LOGIN_DOC.encode()
        for _ in range(40):
            yield b" " * 8192

    async with httpx.AsyncClient(base_url=f"http://{server}") as c:
        response = await c.post(
            "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_another_method_gets_405_in_the_same_shape(client, world, method):
    response = await client.request(method, "/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "METHOD_NOT_ALLOWED"


# --------------------------------------------------------------------------- errors


async def test_unexpected_exceptions_are_masked_and_logged(client, world, monkeypatch, caplog):
    async def boom(*args: Any) -> Any:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(auth, "me", boom)
    client.headers.update(bearer(world.tokens["owner"]))
    with caplog.at_level(logging.ERROR, logger="schema.errors"):
        response = await client.post("/graphql", json={"query": "{ me { email } }"})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert [(e["message"], e["extensions"]) for e in body["errors"]] == [
        ("Unexpected error.", {"code": "INTERNAL_SERVER_ERROR"})
    ]
    assert body["errors"][0]["path"] == ["me"]
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text
    # ...but the operator gets the stack trace.
    logged = [r for r in caplog.records if r.exc_info and SECRET in str(r.exc_info[1])]
    assert logged


async def test_unexpected_exceptions_in_nested_fields_are_masked(client, world, monkeypatch):
    async def boom(*args: Any) -> Any:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(directory, "members_of", boom)
    client.headers.update(bearer(world.tokens["owner"]))
    response = await client.post("/graphql", json={"query": "{ groups { name members { id } } }"})
    body = response.json()
    assert body["errors"], body
    assert {e["message"] for e in body["errors"]} == {"Unexpected error."}
    assert set(error_codes(body)) == {"INTERNAL_SERVER_ERROR"}
    assert SECRET not in response.text


async def test_expected_errors_keep_their_code_and_message(client, world):
    client.headers.update(bearer(world.tokens["owner"]))
    found = []
    for group_id in (str(uuid.uuid4()), str(world.b.group_id), "not-a-uuid"):
        body = await post(
            client, "query($id: ID!) { group(id: $id) { name } }", variables={"id": group_id}
        )
        assert body["data"] is None
        assert error_codes(body) == ["NOT_FOUND"], body
        assert body["errors"][0]["path"] == ["group"]
        found.extend(messages(body))
    assert all(m.endswith("not found") for m in found), found
    # Another tenant's group reads exactly like one that does not exist.
    assert found[0] == found[1]
    client.headers.pop("Authorization")
    body = await post(client, "{ me { email } }")
    assert error_codes(body) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        ("{ nope }", None),
        ("{ group { name } }", None),
        ("{ me { email { x } } }", None),
        ("query($x: Int!) { me { id } }", None),
        ("query($id: ID!) { group(id: $id) { name } }", {}),
    ],
    ids=["unknown field", "missing argument", "leaf selection", "unused variable", "no variable"],
)
async def test_validation_errors_carry_a_code(client, world, document, variables):
    client.headers.update(bearer(world.tokens["owner"]))
    body = await post(client, document, variables=variables)
    assert body.get("data") is None
    assert body["errors"]
    assert set(error_codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}, body


# --------------------------------------------------------------------------- WebSocket


@contextlib.contextmanager
def running_server(**overrides: Any) -> Iterator[str]:
    """A real uvicorn server in a thread (its own loop and Runtime); yields ws://host:port."""
    settings = make_settings(**overrides)
    config = uvicorn.Config(
        create_app(bootstrap(settings)),
        host="127.0.0.1",
        port=0,
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_message_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        proxy_headers=True,
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            assert time.monotonic() < deadline, "uvicorn took too long to start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def serve(rt: Runtime) -> Iterator[Callable[..., str]]:
    """Starts servers on demand; they stop before `rt` empties the tables."""
    with contextlib.ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(running_server(**overrides))


@pytest.fixture
def server(serve: Callable[..., str]) -> str:
    return serve()


GTWS = Subprotocol("graphql-transport-ws")
WS_TIMEOUT = 10  # seconds; a missing answer fails the test instead of hanging it


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WS_TIMEOUT):
        message: dict[str, Any] = json.loads(await ws.recv(decode=True))
    return message


@contextlib.asynccontextmanager
async def graphql_ws(
    host: str, token: str | None = None, **kwargs: Any
) -> AsyncIterator[ClientConnection]:
    """An initialised graphql-transport-ws connection."""
    async with connect(f"ws://{host}/graphql", subprotocols=[GTWS], **kwargs) as ws:
        assert ws.subprotocol == GTWS
        payload = {"authorization": f"Bearer {token}"} if token else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert (await recv_json(ws))["type"] == "connection_ack"
        yield ws


async def operation(ws: ClientConnection, query: str) -> list[dict[str, Any]]:
    """Runs one operation; returns every message for it up to complete (or error)."""
    op_id = str(uuid.uuid4())
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}}))
    received = []
    while True:
        message = await recv_json(ws)
        if message.get("type") == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        assert message["id"] == op_id, message
        received.append(message)
        if message["type"] in ("complete", "error"):
            return received


async def test_ws_query_with_the_token_from_connection_init(server, world):
    async with graphql_ws(server, world.tokens["owner"]) as ws:
        received = await operation(ws, "{ me { email } }")
    assert [m["type"] for m in received] == ["next", "complete"]
    assert received[0]["payload"] == {"data": {"me": {"email": world.a.admin_email}}}


async def test_ws_without_a_token_is_refused_at_connection_init(server, world):
    """An anonymous socket is no longer acknowledged (issue 14, 6; test_ws_hygiene)."""
    async with connect(f"ws://{server}/graphql", subprotocols=[GTWS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)  # no connection_ack
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


@pytest.mark.parametrize("token", ["rds_not-a-session", "revoked"])
async def test_ws_with_a_bad_token_is_refused_at_connection_init(client, server, world, token):
    if token == "revoked":
        token = world.tokens["owner"]
        client.headers.update(bearer(token))
        assert (await post(client, "mutation { logout }"))["data"] == {"logout": True}
    async with connect(f"ws://{server}/graphql", subprotocols=[GTWS]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)  # no connection_ack
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_ws_masks_unexpected_errors(server, world, monkeypatch):
    async def boom(*args: Any) -> Any:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(auth, "me", boom)
    async with graphql_ws(server, world.tokens["owner"]) as ws:
        received = await operation(ws, "{ me { email } }")
    assert SECRET not in json.dumps(received)
    assert error_codes(received[0]["payload"]) == ["INTERNAL_SERVER_ERROR"]
    assert received[0]["payload"]["errors"][0]["message"] == "Unexpected error."


async def test_ws_validation_errors_carry_a_code(server, world):
    async with graphql_ws(server, world.tokens["owner"]) as ws:
        received = await operation(ws, "{ nope }")
    assert received[-1]["type"] == "error"
    assert [e.get("extensions", {}).get("code") for e in received[-1]["payload"]] == [
        "GRAPHQL_VALIDATION_FAILED"
    ]


async def test_ws_refuses_a_foreign_origin(server, world):
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"ws://{server}/graphql", subprotocols=[GTWS], origin=Origin("https://evil.example")
        ):
            pass
    assert refused.value.response.status_code == 403

    # The same host (a page served by this service) and non-browser clients may connect.
    for origin in (Origin(f"http://{server}"), None):
        async with graphql_ws(server, world.tokens["owner"], origin=origin) as ws:
            received = await operation(ws, "{ me { email } }")
        assert received[0]["payload"]["data"]["me"]["email"] == world.a.admin_email


async def test_ws_accepts_an_origin_from_the_settings(serve, world):
    host = serve(ws_allowed_origins=["https://app.example"])
    async with graphql_ws(host, world.tokens["owner"], origin=Origin("https://app.example")) as ws:
        received = await operation(ws, "{ me { email } }")
    assert received[0]["payload"]["data"]["me"]["email"] == world.a.admin_email
    for origin in ("https://evil.example", "https://app.example.evil.example"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://{host}/graphql", subprotocols=[GTWS], origin=Origin(origin)):
                pass
        assert refused.value.response.status_code == 403


async def test_ws_legacy_graphql_ws_protocol_is_not_spoken(server, world):
    try:
        async with connect(
            f"ws://{server}/graphql", subprotocols=[Subprotocol("graphql-ws")]
        ) as ws:
            assert ws.subprotocol is None
            with pytest.raises(ConnectionClosed) as closed:
                # graphql-ws would answer connection_init with connection_ack.
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                await recv_json(ws)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4406
    except InvalidStatus as refused:  # refusing the handshake outright is as good
        assert 400 <= refused.response.status_code < 500


async def test_ws_message_over_the_limit_closes_with_1009(server, world):
    async with graphql_ws(server, world.tokens["owner"]) as ws:
        # A message at the limit is still read (and answered).
        padding = " " * (64 * 1024 - 200)
        fits = json.dumps(
            {"id": "1", "type": "subscribe", "payload": {"query": "{ me { email } }" + padding}}
        )
        assert len(fits) <= 64 * 1024
        await ws.send(fits)
        assert (await recv_json(ws))["type"] == "next"
        assert (await recv_json(ws))["type"] == "complete"

        too_big = json.dumps(
            {"id": "2", "type": "subscribe", "payload": {"query": "{ me { email } }" + " " * 65536}}
        )
        await ws.send(too_big)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(WS_TIMEOUT):
                while True:
                    await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
