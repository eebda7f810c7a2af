"""Login throttling over real HTTP from several loopback addresses (issue 14, points 2, 3).

Uvicorn serves the app in the test's own event loop (so the test's clock and
database are the server's) on 127.0.0.1; each client socket is bound to its own
127.0.0.x, which the server sees as the peer address, as it would see a browser's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from api.app import create_app
from api.models import LoginAttempt
from api.runtime import Runtime
from tests.conftest import Clock, GraphQL, error_codes
from tests.world import PASSWORD

LOGIN = """mutation($e: String!, $p: String!) {
  login(email: $e, password: $p) { user { email } }
}"""

From = Callable[[str], GraphQL]


@pytest.fixture
async def from_(rt: Runtime) -> AsyncIterator[From]:
    """`from_("127.0.0.2")`: GraphQL over HTTP from that source address."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # As `rundruf serve` runs it: forwarded headers believed from 127.0.0.1 only.
    config = uvicorn.Config(
        create_app(rt), lifespan="off", proxy_headers=True, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    clients: dict[str, httpx.AsyncClient] = {}

    def make(address: str) -> GraphQL:
        if address not in clients:
            clients[address] = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(local_address=address),
                base_url=f"http://127.0.0.1:{port}",
                timeout=30,
            )
        return GraphQL(clients[address])

    try:
        yield make
    finally:
        for client in clients.values():
            await client.aclose()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        listener.close()


async def _login(gql: GraphQL, email: str, password: str) -> dict[str, Any]:
    return await gql(LOGIN, e=email, p=password)


def _code(body: dict[str, Any]) -> str | None:
    codes = error_codes(body)
    return codes[0] if codes else None


def _retry_after(body: dict[str, Any]) -> int:
    assert _code(body) == "TOO_MANY_ATTEMPTS", body
    seconds = body["errors"][0]["extensions"]["retryAfterSeconds"]
    assert isinstance(seconds, int)
    return seconds


async def _rows(rt: Runtime) -> int:
    async with rt.db.reading() as s:
        return int(await s.scalar(select(func.count()).select_from(LoginAttempt)) or 0)


async def test_six_failures_from_one_address_lock_the_account_for_nobody_else(
    from_: From, world: Any
) -> None:
    attacker = from_("127.0.0.2")
    for _ in range(6):
        await _login(attacker, world.a.admin_email, "wrong guess")
    # The administrator at another address signs in at once.
    signed = await _login(from_("127.0.0.3"), world.a.admin_email, PASSWORD)
    assert signed["data"]["login"]["user"]["email"] == world.a.admin_email
    # So does a colleague behind the attacker's address (the same NAT), on their account.
    colleague = await _login(attacker, world.a.viewer_email, PASSWORD)
    assert colleague["data"]["login"]["user"]["email"] == world.a.viewer_email


async def test_a_failing_address_waits_a_growing_delay_not_a_lockout(
    from_: From, world: Any, clock: Clock, rt: Runtime
) -> None:
    attacker = from_("127.0.0.2")
    for _ in range(3):
        assert _code(await _login(attacker, world.a.admin_email, "wrong")) == "UNAUTHENTICATED"
    waits = []
    for _ in range(8):
        waits.append(_retry_after(await _login(attacker, world.a.admin_email, "wrong")))
        clock.advance(seconds=waits[-1])
        assert _code(await _login(attacker, world.a.admin_email, "wrong")) == "UNAUTHENTICATED"
    # 1 s doubling, capped at a minute: slowed, never 15 minutes.
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    # Refused attempts are not stored and do not prolong the wait: one request
    # every 2.5 minutes is let through every time.
    for _ in range(3):
        assert _retry_after(await _login(attacker, world.a.admin_email, "wrong")) == 60
        clock.advance(seconds=150)
        assert _code(await _login(attacker, world.a.admin_email, "wrong")) == "UNAUTHENTICATED"
    clock.advance(seconds=60)
    # The owner of the account behind that address gets in once the wait is over.
    signed = await _login(attacker, world.a.admin_email, PASSWORD)
    assert signed["data"]["login"]["user"]["email"] == world.a.admin_email
    # And the success forgets that address's failures on the account.
    assert _code(await _login(attacker, world.a.admin_email, "wrong")) == "UNAUTHENTICATED"


async def test_a_spread_attack_slows_the_account_and_a_clean_address_still_signs_in(
    from_: From, world: Any, clock: Clock
) -> None:
    addresses = [f"127.0.0.{i}" for i in range(10, 26)]
    for address in addresses:
        assert _code(await _login(from_(address), world.a.admin_email, "x")) == "UNAUTHENTICATED"
    # The account has 16 failures, but the administrator's address has none.
    signed = await _login(from_("127.0.0.40"), world.a.admin_email, PASSWORD)
    assert signed["data"]["login"]["user"]["email"] == world.a.admin_email
    # An attacking address with one failure waits, mildly, before its next guess...
    wait = _retry_after(await _login(from_(addresses[0]), world.a.admin_email, "x"))
    assert 1 <= wait <= 30
    # ...and is never locked out.
    clock.advance(seconds=wait)
    assert _code(await _login(from_(addresses[0]), world.a.admin_email, "x")) == "UNAUTHENTICATED"
    # Other accounts are not touched.
    other = await _login(from_(addresses[1]), world.a.viewer_email, PASSWORD)
    assert other["data"]["login"]["user"]["email"] == world.a.viewer_email


async def test_one_address_cannot_spray_many_accounts_and_forwarded_headers_do_not_help(
    from_: From, world: Any, clock: Clock
) -> None:
    sprayer = from_("127.0.0.2")
    # A client that is no trusted proxy cannot pick its address with X-Forwarded-For.
    for i in range(20):
        sprayer.headers["X-Forwarded-For"] = f"127.0.1.{i}"
        body = await _login(sprayer, f"user{i}@spray.example", "Sommer2026!")
        assert _code(body) == "UNAUTHENTICATED"
    sprayer.headers["X-Forwarded-For"] = "127.0.1.99"
    wait = _retry_after(await _login(sprayer, "user99@spray.example", "Sommer2026!"))
    assert 1 <= wait <= 60
    # Only that address is slowed: the account's owner elsewhere signs in.
    signed = await _login(from_("127.0.0.3"), world.a.admin_email, PASSWORD)
    assert signed["data"]["login"]["user"]["email"] == world.a.admin_email
    clock.advance(seconds=wait)
    assert _code(await _login(sprayer, "user99@spray.example", "x")) == "UNAUTHENTICATED"


async def test_an_overlong_email_is_refused_before_anything_is_stored(
    from_: From, rt: Runtime
) -> None:
    body = await _login(from_("127.0.0.2"), "a" * 200_000 + "@example.com", "x")
    assert _code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "email"
    assert await _rows(rt) == 0


async def test_a_thousand_bogus_logins_leave_a_bounded_number_of_rows(
    from_: From, rt: Runtime, clock: Clock
) -> None:
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]

    async def burst(count: int) -> list[str | None]:
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> str | None:
            async with gate:
                email = f"{uuid.uuid4().hex}{'x' * 250}@bogus.example"
                return _code(await _login(from_(addresses[i % 4]), email, "x" * 1000))

        jobs: list[Awaitable[str | None]] = [one(i) for i in range(count)]
        return await asyncio.gather(*jobs)

    codes = await burst(1000)
    assert set(codes) <= {"UNAUTHENTICATED", "TOO_MANY_ATTEMPTS"}
    # At most 20 failures an address within the window: 4 addresses, 80 rows.
    assert 0 < await _rows(rt) <= 80
    async with rt.db.reading() as s:
        stored = [str(v) for v in await s.scalars(select(LoginAttempt.account))]
    assert all(len(v) == 64 and "bogus" not in v for v in stored)
    # Once the window has passed, new attempts clear the old ones away.
    for _ in range(2):
        clock.advance(minutes=15, seconds=1)
        await burst(100)
        assert 0 < await _rows(rt) <= 80


# --------------------------------------------------------------------------- the rule alone


def test_the_wait_doubles_from_one_second_after_the_free_failures_up_to_the_cap() -> None:
    from api.domain.login_throttle import backoff

    assert [backoff(n, 3, 60) for n in range(0, 11)] == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff(10_000, 3, 60) == 60


def test_a_pair_without_failures_is_never_held_back_by_the_accounts_count() -> None:
    from datetime import UTC, datetime

    from api.domain.login_throttle import Failures, Policy, wait_seconds

    now = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    policy = Policy(pair_free_failures=3, max_delay_seconds=60)
    attacked = Failures(pair=0, pair_last=None, account=500, address=0, address_last=None)
    assert wait_seconds(attacked, policy, now) == 0
    failed_once = Failures(pair=1, pair_last=now, account=500, address=1, address_last=now)
    assert wait_seconds(failed_once, policy, now) == 30


def test_client_and_account_keys() -> None:
    from api.domain.login_throttle import account_key, client_key

    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("127.0.0.2") == "127.0.0.2"
    assert len(client_key("x" * 500)) == 64
    key = account_key(b"secret", "someone@example.com")
    assert len(key) == 64 and "someone" not in key
    assert key != account_key(b"another secret", "someone@example.com")
