"""Malformed GraphQL requests get a reason, never a 500 or an abnormal close (issue 14, 4).

Over HTTP: a body that is no JSON object, nests deeper than the limit, is not
UTF-8, holds a number that is not finite or too long, or comes with another
content type answers 400 with a coded GraphQL error. Over graphql-transport-ws
the same payloads close the socket with 4400 and the guard's reason, and the log
holds no traceback; other sockets go on. The guard itself runs in C-level passes
(no Python step per byte, no pattern that restarts at every quote), since it
runs on the event loop before anyone signed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

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
    "NaN": (b'{"query": "{ __typename }", "variables": {"v": NaN}}', "NaN is no JSON number"),
    "Infinity": (b'{"query": "{ __typename }", "variables": {"v": Infinity}}', "no JSON number"),
    "-Infinity": (b'{"query": "{ __typename }", "variables": {"v": -Infinity}}', "no JSON number"),
    "1e999": (b'{"query": "{ __typename }", "variables": {"v": 1e999}}', "out of range"),
    "5000 digits": (
        b'{"query": "{ __typename }", "variables": {"v": ' + b"9" * 5000 + b"}}",
        "number too long",
    ),
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


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        ("9" * 5000, "'variables' holds a number too long"),
        ('{"v": NaN}', "'variables' is not valid JSON (NaN"),
        ("[" * 100 + "]" * 100, "nested deeper than 64 levels"),
        ("5", "'variables' must be a JSON object"),
        ("[1]", "'variables' must be a JSON object"),
    ],
)
async def test_get_variables_are_read_by_the_same_guard(client, world, caplog, variables, reason):
    response = await client.get(
        "/graphql", params={"query": "{ __typename }", "variables": variables}
    )
    message = bad_request(response)
    assert message.startswith(reason) or reason in message, message
    no_traceback(caplog)


SUBSCRIPTION = "subscription { commandUpdated { id } }"


async def test_a_subscription_over_http_is_refused_with_400(client, world, caplog):
    owner = {"Authorization": f"Bearer {world.tokens['owner']}"}
    for headers in ({}, owner):
        posted = await client.post("/graphql", json={"query": SUBSCRIPTION}, headers=headers)
        assert "WebSocket" in bad_request(posted)
        got = await client.get("/graphql", params={"query": SUBSCRIPTION}, headers=headers)
        assert "WebSocket" in bad_request(got)
    # Queries and mutations still run by POST; GET runs nothing.
    ok = await client.post("/graphql", json={"query": "{ __typename }"})
    assert ok.json() == {"data": {"__typename": "Query"}}
    got = await client.get("/graphql", params={"query": "{ __typename }"})
    assert "POST" in bad_request(got)
    no_traceback(caplog)


async def test_the_refusal_log_line_quotes_client_text_escaped_and_bounded(client, world, caplog):
    caplog.set_level(logging.INFO)
    forged = "x\n2026-12-07 06:00:00 ERROR api.app: forged line\u2028\x1b[31m" + "y" * 5000
    response = await client.post(
        "/graphql", json={"query": "query A { __typename }", "operationName": forged}
    )
    assert "Unknown operation named" in bad_request(response)
    (line,) = [r.getMessage() for r in caplog.records if "refused a GraphQL" in r.getMessage()]
    assert line.isprintable() and line.isascii(), line
    assert len(line) < 400
    assert "400 BAD_REQUEST" in line


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


def test_an_unclosed_string_is_one_match_to_the_end():
    """The string pattern matches from any opening quote to its end or, unclosed,
    to the end of the input; one that may fail after reading to the end is tried
    again at every later quote (quadratic: 64 KB of '\\"' took 15 s)."""
    from api.http import json_guard

    for tail in (b"", b"\\"):
        unclosed = b'"' + b'\\"' * 2000 + tail
        assert json_guard._STRING.sub(b"", b"[" * 65 + unclosed) == b"[" * 65
    assert json_guard._STRING.sub(b"", b'["a\\"b", "c"]') == b"[, ]"


def python_lines(call: Callable[[], object]) -> int:
    """How many lines of Python run for ``call`` (the C-level work counts none)."""
    lines = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    sys.settrace(trace)
    try:
        call()
    except ValueError:
        pass
    finally:
        sys.settrace(None)
    return lines


SIZE = 256 * 1024
BRACKET_BODIES: dict[str, bytes] = {
    "all openers": b"[" * SIZE,
    "empty lists": b"[" + b"[]," * (SIZE // 3 - 1) + b"[]]",
    "alternating": b"[]" * (SIZE // 2),
    "unclosed string after 65 openers": b"[" * 65 + b'"' + b'\\"' * (SIZE // 2),
    "many lists 65 deep": (b"[" * 65 + b"]" * 65 + b",") * (SIZE // 131),
    "many lists 9 deep": b"[" + (b"[" * 9 + b"]" * 9 + b",") * (SIZE // 19) + b"1]",
    "many lists 64 deep": b"[" + (b"[" * 63 + b"]" * 63 + b",") * (SIZE // 127) + b"1]",
    "strings": b"[" + b'"[{",' * (SIZE // 5) + b'""]',
}


@pytest.mark.parametrize("body", BRACKET_BODIES.values(), ids=BRACKET_BODIES.keys())
def test_the_guard_takes_no_python_step_per_bracket(body):
    """The guard runs on the event loop for unauthenticated bodies: its Python
    work stays far below one line per bracket (it was four per bracket)."""
    from api.http import json_guard

    assert python_lines(lambda: json_guard.too_deep(body)) < len(body) // 16


def test_decoding_a_body_of_many_lists_runs_no_cycle_collection():
    """87,000 lists from one body made the collector run full collections over the
    whole server (100 ms instead of 5 per body); decoded JSON holds no cycles."""
    import gc

    from api.http import json_guard

    body = b'{"query": "{ __typename }", "variables": {"a": [' + b"[]," * 87_000 + b"[]]}}"
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        decoded = json_guard.loads(body, max_values=None)  # as for a verified agent
    finally:
        gc.callbacks.remove(count)
    assert isinstance(decoded, dict) and len(decoded["variables"]["a"]) == 87_001
    # At most the one young collection due when the collector is back on (it was
    # about 130 collections, a full one among them).
    assert len(collections) <= 1 and 2 not in collections, collections
    assert gc.isenabled()


MANY_LISTS = b'{"query": "{ __typename }", "variables": {"a": [' + b"[]," * 87_000 + b"[]]}}"


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of what json_guard hands to json.loads."""
    from types import SimpleNamespace

    from api.http import json_guard

    sizes: list[int] = []

    def loads(text: str, **kwargs: Any) -> Any:
        sizes.append(len(text))
        return json.loads(text, **kwargs)

    stand_in = SimpleNamespace(loads=loads, JSONDecodeError=json.JSONDecodeError)
    monkeypatch.setattr(json_guard, "json", stand_in)
    return sizes


async def test_a_body_of_87000_small_lists_is_refused_undecoded(client, world, caplog, decodes):
    """Decoding it held the event loop for milliseconds; twenty such bodies from
    anyone held other requests for seconds. Counted in bytes, refused unread."""
    caplog.set_level(logging.DEBUG)
    json_headers = {"Content-Type": "application/json"}
    for headers in (
        json_headers,
        {**json_headers, "Authorization": f"Bearer {world.tokens['owner']}"},
        # An agent's small body is not looked at by agent_bodies: bound like any.
        {**json_headers, "Authorization": f"Bearer {world.tokens['agent_a']}"},
    ):
        response = await client.post("/graphql", content=MANY_LISTS, headers=headers)
        assert response.status_code == 400, response.text
        (error,) = response.json()["errors"]
        assert error["extensions"] == {
            "code": "BAD_REQUEST",
            "reason": "tooManyValues",
            "max": 25_000,
        }
        assert "more than 25000 values" in error["message"]
    assert decodes == []
    no_traceback(caplog)


async def test_a_verified_agents_large_body_is_decoded_whatever_it_holds(client, world, decodes):
    import gzip

    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    forged = {**headers, "Authorization": "Bearer rda_not-a-real-token"}
    response = await client.post("/graphql", content=gzip.compress(MANY_LISTS), headers=forged)
    assert response.status_code in (400, 413), response.text
    assert decodes == []
    agent = {**headers, "Authorization": f"Bearer {world.tokens['agent_a']}"}
    response = await client.post("/graphql", content=gzip.compress(MANY_LISTS), headers=agent)
    assert response.json() == {"data": {"__typename": "Query"}}
    assert decodes == [len(MANY_LISTS)]


async def test_a_body_just_under_the_value_bound_is_read(client, world):
    """Lists of ids past the input guard's MAX_ITEMS still reach the guard and its
    precise tooManyItems (test_input_guard, test_an_id_list_over_the_item_limit...)."""
    from api.http import json_guard

    near = b'{"query": "{ __typename }", "variables": {"a": [' + b"1," * 24_990 + b"1]}}"
    assert near.count(b",") + near.count(b"[") + near.count(b"{") > json_guard.MAX_VALUES - 20
    response = await client.post(
        "/graphql", content=near, headers={"Content-Type": "application/json"}
    )
    assert response.json() == {"data": {"__typename": "Query"}}


def test_the_depth_check_agrees_with_counting_bracket_by_bracket():
    import random

    from api.http import json_guard

    rng = random.Random(14)
    for _ in range(500):
        out, level = [], 0
        for _ in range(rng.randrange(400)):
            if level and rng.random() < rng.choice([0.3, 0.5, 0.7]):
                out.append(rng.choice("]}"))
                level -= 1
            else:
                out.append(rng.choice("[{"))
                level += 1
        raw = ("".join(out) + "]" * level).encode()
        for limit in (3, 10, 64):
            assert json_guard.too_deep(raw, limit) == (json_guard.depth(raw) > limit), raw
    # Unbalanced (invalid) input errs towards too deep, never below the truth.
    assert json_guard.too_deep(b"[" * 65)
    assert json_guard.too_deep(b"]" + b"[" * 65)
    assert not json_guard.too_deep(b"]" * 65 + b"[" * 10)


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
    "NaN": '{"type": "ping", "payload": {"v": NaN}}',
    "1e999": '{"type": "ping", "payload": {"v": 1e999}}',
    "5000 digits": '{"type": "ping", "payload": {"v": ' + "9" * 5000 + "}}",
}


async def closed_with(ws: ClientConnection) -> int:
    return (await close_frame(ws))[0]


async def close_frame(ws: ClientConnection) -> tuple[int, str]:
    """The code and reason the server closed with (reading anything before it)."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(WS_TIMEOUT):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


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


FRAME_REASONS = {
    "20,000 levels deep": (DEEP.decode(), "nested deeper than 64 levels"),
    "NaN": ('{"type": "ping", "x": NaN}', "NaN is no JSON number"),
    "5000 digits": ('{"type": "ping", "x": ' + "9" * 5000 + "}", "number too long"),
    "broken JSON": ('{"type": ', "not valid JSON"),
    "20,000 lists": ('{"type": "ping", "x": [' + "[]," * 20_000 + "[]]}", "more than 25000 values"),
}


@pytest.mark.parametrize(("frame", "reason"), FRAME_REASONS.values(), ids=FRAME_REASONS.keys())
async def test_a_frame_that_is_no_json_closes_with_the_guards_reason(server, world, frame, reason):
    async with connect(f"ws://{server}/graphql", subprotocols=[GTWS]) as ws:
        await ws.send(frame)
        code, said = await close_frame(ws)
    assert (code, reason in said) == (4400, True), said


LONG_TYPES = {"euro": "€" * 200, "emoji": "\U0001f600" * 100, "ascii": "a" * 300}


@pytest.mark.parametrize("kind", LONG_TYPES.values(), ids=LONG_TYPES.keys())
async def test_a_close_reason_is_cut_to_123_bytes_at_a_character(server, world, caplog, kind):
    async with connect(f"ws://{server}/graphql", subprotocols=[GTWS]) as ws:
        await ws.send(json.dumps({"type": kind}, ensure_ascii=False))
        code, reason = await close_frame(ws)
    assert code == 4400
    assert reason.startswith("Unknown message type: ")
    assert len(reason.encode()) <= 123
    no_traceback(caplog)


async def test_strawberrys_own_closes_are_cut_too(server, world, caplog):
    """4409 for an id in use names the id: a long one must not break the close."""
    subscribe = {"id": "€" * 300, "type": "subscribe"}
    subscribe["payload"] = {"query": "subscription { commandUpdated { id } }"}
    async with graphql_ws(server, world.tokens["owner"]) as ws:
        await ws.send(json.dumps(subscribe))
        await ws.send(json.dumps(subscribe))
        code, reason = await close_frame(ws)
    assert code == 4409 and len(reason.encode()) <= 123, reason
    no_traceback(caplog)


def test_close_reasons_fit_a_control_frame():
    from api.http.graphql_ws import close_reason

    assert close_reason("short") == "short"
    for text in ("€" * 50, "a" * 122 + "€", "\U0001f600" * 40, "\ud800" * 40):
        cut = close_reason(text)
        assert len(cut.encode()) <= 123
        assert cut.endswith("...")
