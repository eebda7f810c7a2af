"""The per-address WebSocket cap as a plain object (issue 14, point 6; review point 3).

Signed-in sockets count against the limit; sockets still waiting to sign in
have a small budget of their own, in which the newest pushes out the oldest, so
they can neither starve signed-in sockets nor lock out an agent that signs in.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from api.http.socket_cap import (
    AGENT_SOCKETS_PER_INSTALLATION,
    PRE_SIGN_IN_PER_CLIENT,
    SocketCap,
    client_key,
)


async def _nothing() -> None:
    return None


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        (None, "unknown"),
        ("proxy.local", "proxy.local"),
    ],
)
def test_an_ipv6_client_counts_by_its_64(host, key):
    assert client_key(host) == key


def test_sockets_waiting_to_sign_in_do_not_count_against_the_limit():
    cap = SocketCap(limit=2)
    waiting = [cap.open("a", _nothing)[0] for _ in range(PRE_SIGN_IN_PER_CLIENT)]
    assert cap.signed_in_for("a") == 0 and not cap.full("a")
    agent, pushed_out = cap.open("a", _nothing)
    assert pushed_out is waiting[0] and pushed_out.closed
    assert agent.sign_in()
    assert cap.signed_in_for("a") == 1
    assert cap.waiting_for("a") == PRE_SIGN_IN_PER_CLIENT - 1
    # Another address has its own budget.
    assert cap.open("b", _nothing)[1] is None


def test_a_pushed_out_socket_cannot_sign_in_and_gives_nothing_back_twice():
    cap = SocketCap(limit=2, pre_sign_in=1)
    first, _ = cap.open("a", _nothing)
    second, pushed_out = cap.open("a", _nothing)
    assert pushed_out is first
    assert not first.sign_in()
    first.close()
    assert cap.waiting_for("a") == 1
    assert second.sign_in()
    second.close()
    second.close()
    assert (cap.signed_in_for("a"), cap.waiting_for("a")) == (0, 0)


def test_a_refused_signed_in_socket_is_a_rate_limited_warning(caplog):
    caplog.set_level(logging.INFO)
    cap = SocketCap(limit=1)
    first, _ = cap.open("a", _nothing)
    assert first.sign_in()
    for _ in range(5):
        ticket, _ = cap.open("a", _nothing)
        assert not ticket.sign_in()
        ticket.close()
    lines = [r for r in caplog.records if "refused a signed-in WebSocket" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING]
    assert "RUNDRUF_WS_MAX_PER_CLIENT" in lines[0].getMessage()
    first.close()
    assert cap.signed_in_for("a") == 0


def test_a_socket_vouched_for_at_the_handshake_is_signed_in_at_once():
    cap = SocketCap(limit=1, pre_sign_in=1)
    vouched = cap.open_signed_in("a", _nothing)
    assert vouched is not None and vouched.signed_in
    # Sockets that never sign in neither push it out nor take its place...
    for _ in range(5):
        cap.open("a", _nothing)
    assert not vouched.closed and cap.signed_in_for("a") == 1
    # ...and its connection_init changes nothing; the address is full.
    assert vouched.sign_in()
    assert cap.open_signed_in("a", _nothing) is None
    vouched.close()
    assert cap.signed_in_for("a") == 0


async def test_pushing_out_a_socket_whose_client_is_gone_raises_nothing():
    """The newcomer's handshake closes the pushed-out socket; when that client had
    vanished already, the close failed and the newcomer got a 500 and a traceback."""
    from starlette.websockets import WebSocket, WebSocketState

    from api.app import _push_out

    async def receive() -> dict[str, object]:
        return {"type": "websocket.receive", "text": "{}"}

    async def gone(message: dict[str, object]) -> None:
        raise OSError("connection reset")

    ws = WebSocket({"type": "websocket", "path": "/graphql", "headers": []}, receive, gone)
    ws.application_state = WebSocketState.CONNECTED
    await _push_out(ws)
    assert ws.application_state is WebSocketState.DISCONNECTED


def test_users_filling_the_address_never_take_the_agents_place():
    """Review: fifty website tabs behind the agent's NAT took every place of the
    address, and the agent (and with it every alarm) was refused for good."""
    cap = SocketCap(limit=50)
    address = client_key("203.0.113.9")
    for _ in range(50):
        assert cap.open_signed_in(address, _nothing) is not None
    assert cap.full(address)
    installation = uuid.uuid4()
    agent = cap.open_signed_in(address, _nothing, installation)
    assert agent is not None and agent.sign_in(installation)
    # One that signs in only with connection_init gets in as well.
    waiting, _ = cap.open(address, _nothing)
    assert waiting.sign_in(installation)
    assert cap.signed_in_for(address) == 50
    assert cap.agent_sockets_for(installation) == 2
    # A user cannot sign in on a place vouched for an agent, nor past the limit.
    assert not agent.sign_in()
    user, _ = cap.open(address, _nothing)
    assert not user.sign_in()


def test_an_installation_has_a_few_places_of_its_own():
    cap = SocketCap(limit=1, per_installation=AGENT_SOCKETS_PER_INSTALLATION)
    installation, other = uuid.uuid4(), uuid.uuid4()
    agents = [cap.open_signed_in("a", _nothing, installation) for _ in range(4)]
    assert all(agents) and cap.agent_full(installation)
    assert cap.open_signed_in("a", _nothing, installation) is None
    late, _ = cap.open("a", _nothing)
    assert not late.sign_in(installation)
    # Another installation and the address's users are not affected...
    assert cap.open_signed_in("a", _nothing, other) is not None
    assert cap.open_signed_in("a", _nothing) is not None
    # ...and a closed socket gives its installation's place back.
    for ticket in agents:
        assert ticket is not None
        ticket.close()
    assert cap.agent_sockets_for(installation) == 0
    assert cap.open_signed_in("a", _nothing, installation) is not None
