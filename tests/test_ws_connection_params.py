"""A socket's connection_init parameters are refused cleanly whatever they hold
(issue 14, point 1, review point 3): a token that can be none closes with 4403, never
with an unexpected error and an abnormal close (1006)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from api.security import hash_token
from tests.test_graphql_protections import GTWS
from tests.test_request_hygiene import closed_with, no_traceback
from tests.test_ws_hygiene import serve, server  # noqa: F401 - fixtures

MALFORMED = {
    "lone-surrogate": "Bearer \ud800",
    "nul": "Bearer rda_\x00",
    "10k": "Bearer " + "x" * 10_000,  # a frame still under the socket's message limit
    "not-ascii": "Bearer rda_äöü",
    "number": 12345,
    "object": {"token": "rda_x"},
}


@pytest.mark.parametrize("authorization", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_token_that_cannot_be_one_closes_the_socket_with_4403(
    server: str,  # noqa: F811 - the fixture imported above
    world: Any,
    caplog: pytest.LogCaptureFixture,
    authorization: object,
) -> None:
    async with connect(f"ws://{server}/graphql", subprotocols=[GTWS]) as ws:
        frame = {"type": "connection_init", "payload": {"authorization": authorization}}
        await ws.send(json.dumps(frame))
        assert await closed_with(ws) == 4403
    no_traceback(caplog)


def test_any_text_hashes_a_lone_surrogate_too() -> None:
    """Its hash matches no stored one; encoding it strictly raised UnicodeEncodeError."""
    assert hash_token("rda_\ud800") != hash_token("rda_\ud801")
    assert len(hash_token("\ud800")) == 64
