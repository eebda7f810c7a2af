"""Login throttling over real HTTP from several loopback addresses (issue 14, points 2, 3).

Uvicorn serves the app in the test's own event loop (so the test's clock and
database are the server's) on 127.0.0.1; each client socket is bound to its own
127.0.x.y, which the server sees as the peer address, as it would see a browser's.
A browser's device cookie is handed on by hand (`device=`), as one browser keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event, func, select

from api import security
from api.app import create_app
from api.domain.login_throttle import ACCOUNT_FREE_FAILURES
from api.models import LoginCounter, Role, User
from api.runtime import Runtime
from tests.conftest import Clock, error_codes, make_settings
from tests.world import _HASH, PASSWORD

LOGIN = """mutation($e: String!, $p: String!) {
  login(email: $e, password: $p) { user { email } }
}"""
DEVICE_COOKIE = "rundruf_device"


@dataclasses.dataclass
class Answer:
    body: dict[str, Any]
    device: str | None  # the device cookie the answer set

    @property
    def code(self) -> str | None:
        codes = error_codes(self.body)
        return codes[0] if codes else "OK"

    @property
    def retry_after(self) -> int:
        assert self.code == "TOO_MANY_ATTEMPTS", self.body
        seconds = self.body["errors"][0]["extensions"]["retryAfterSeconds"]
        assert isinstance(seconds, int)
        return seconds


Login = Callable[..., Any]


@contextlib.asynccontextmanager
async def serving(rt: Runtime) -> AsyncIterator[Login]:
    """`await login("127.0.0.2", email, password, device=cookie)` over HTTP from that address."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # As `rundruf serve` runs it: forwarded headers believed from 127.0.0.1 only.
    # Keep-alive longer than a test's slowest round: a connection the server closes
    # while a client reuses it is a ReadError, not an answer.
    config = uvicorn.Config(
        create_app(rt),
        lifespan="off",
        proxy_headers=True,
        log_config=None,
        access_log=False,
        timeout_keep_alive=300,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    clients: dict[str, httpx.AsyncClient] = {}

    async def login(
        address: str,
        email: str,
        password: str,
        device: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        if address not in clients:
            clients[address] = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(local_address=address),
                base_url=f"http://127.0.0.1:{port}",
                timeout=60,
            )
        sent = dict(headers or {})
        if device is not None:
            sent["Cookie"] = f"{DEVICE_COOKIE}={device}"
        response = await clients[address].post(
            "/graphql",
            json={"query": LOGIN, "variables": {"e": email, "p": password}},
            headers=sent,
        )
        assert response.status_code == 200, response.text
        # Each test keeps its browsers' cookies itself; httpx's jar must not mix them.
        clients[address].cookies.clear()
        return Answer(response.json(), response.cookies.get(DEVICE_COOKIE))

    try:
        yield login
    finally:
        for client in clients.values():
            await client.aclose()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        listener.close()


@pytest.fixture
async def login(rt: Runtime) -> AsyncIterator[Login]:
    async with serving(rt) as login:
        yield login


async def _rows(rt: Runtime) -> int:
    async with rt.db.reading() as s:
        return int(await s.scalar(select(func.count()).select_from(LoginCounter)) or 0)


async def _staff(rt: Runtime, tenant_id: uuid.UUID, count: int) -> list[str]:
    emails = [f"staff{i}@owner.example" for i in range(count)]
    async with rt.db.transaction() as s:
        s.add_all(
            User(
                tenant_id=tenant_id,
                email=email,
                name=email,
                role=Role.TENANT_VIEWER,
                password_hash=_HASH,
            )
            for email in emails
        )
    return emails


async def test_six_failures_from_one_address_lock_the_account_for_nobody_else(
    login: Login, world: Any
) -> None:
    for _ in range(6):
        await login("127.0.0.2", world.a.admin_email, "wrong guess")
    # The administrator at another address signs in at once.
    assert (await login("127.0.0.3", world.a.admin_email, PASSWORD)).code == "OK"
    # So does a colleague behind the attacker's address (the same NAT), on their account.
    assert (await login("127.0.0.2", world.a.viewer_email, PASSWORD)).code == "OK"


async def test_a_failing_address_waits_a_growing_delay_not_a_lockout(
    login: Login, world: Any, clock: Clock
) -> None:
    admin = world.a.admin_email
    for _ in range(3):
        assert (await login("127.0.0.2", admin, "wrong")).code == "UNAUTHENTICATED"
    waits = []
    for _ in range(8):
        waits.append((await login("127.0.0.2", admin, "wrong")).retry_after)
        clock.advance(seconds=waits[-1])
        assert (await login("127.0.0.2", admin, "wrong")).code == "UNAUTHENTICATED"
    # 1 s doubling, capped at a minute: slowed, never 15 minutes.
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    # Refused attempts do not prolong the wait: one request every 2.5 minutes is
    # let through every time.
    for _ in range(3):
        assert (await login("127.0.0.2", admin, "wrong")).retry_after == 60
        clock.advance(seconds=150)
        assert (await login("127.0.0.2", admin, "wrong")).code == "UNAUTHENTICATED"
    clock.advance(seconds=60)
    # The owner of the account behind that address gets in once the wait is over...
    assert (await login("127.0.0.2", admin, PASSWORD)).code == "OK"
    # ...and the success forgets that address's failures on the account.
    assert (await login("127.0.0.2", admin, "wrong")).code == "UNAUTHENTICATED"


async def test_a_known_device_signs_in_while_a_sprayer_behind_its_address_polls(
    login: Login, world: Any, clock: Clock
) -> None:
    """Review finding 1: a sprayer behind an office's NAT polled each opening of the
    address, and nobody behind it ever signed in again."""
    nat = "127.0.0.2"
    colleague = await login(nat, world.a.viewer_email, PASSWORD)
    assert colleague.code == "OK"
    for i in range(25):
        await login(nat, f"user{i}@spray.example", "Sommer2026!")
    for _ in range(5):
        # The sprayer takes every opening the moment it comes...
        wait = (await login(nat, "poll@spray.example", "x")).retry_after
        assert 1 <= wait <= 60
        clock.advance(seconds=wait)
        assert (await login(nat, f"{uuid.uuid4().hex}@spray.example", "x")).code == (
            "UNAUTHENTICATED"
        )
        # ...and the colleague's browser, known to the account, gets in all the same.
        again = await login(nat, world.a.viewer_email, PASSWORD, device=colleague.device)
        assert again.code == "OK"
    # A browser never used for the account waits behind the sprayer: slowed, at most
    # the cap, never longer.
    stranger = await login(nat, world.a.admin_email, PASSWORD)
    assert 1 <= stranger.retry_after <= 60


async def test_colleagues_signing_in_at_once_behind_one_address_all_get_in(
    login: Login, world: Any, rt: Runtime
) -> None:
    """Review finding 2: attempts in flight counted as failures for everyone else;
    17 of 24 colleagues with the right password were refused, for 61 seconds."""
    staff = await _staff(rt, world.a.tenant_id, 24)
    answers = await asyncio.gather(*(login("127.0.0.60", e, PASSWORD) for e in staff))
    assert [a.code for a in answers] == ["OK"] * 24
    # A double submit from a clean address: both get in.
    twice = await asyncio.gather(
        login("127.0.0.61", world.a.admin_email, PASSWORD),
        login("127.0.0.61", world.a.admin_email, PASSWORD),
    )
    assert [a.code for a in twice] == ["OK", "OK"]


async def test_parallel_guesses_from_one_address_do_not_skip_the_delay(
    login: Login, world: Any
) -> None:
    answers = await asyncio.gather(
        *(login("127.0.0.2", world.a.admin_email, f"guess {i}") for i in range(30))
    )
    codes = [a.code for a in answers]
    assert codes.count("OK") == 0
    # The three free guesses were checked; every other one was told to wait, at
    # most the cap.
    assert codes.count("UNAUTHENTICATED") <= 3
    assert all(1 <= a.retry_after <= 60 for a in answers if a.code == "TOO_MANY_ATTEMPTS")


async def _botnet(login: Login, account: str, addresses: list[str], tries: int) -> list[str]:
    """`tries` wrong guesses from each address, all at once; each address's codes."""
    answers = await asyncio.gather(
        *(login(a, account, f"guess {a} {t}") for a in addresses for t in range(tries))
    )
    return [str(a.code) for a in answers]


async def test_a_fresh_address_signs_in_at_once_while_a_polling_attacker_rations_the_account(
    login: Login, world: Any, clock: Clock
) -> None:
    """Issue 14, point 2: "a correct password from an address without recent failures
    succeeds". An attacker polling the account's rationed openings took each one, so
    the administrator on a new device at a clean address never got in."""
    admin = world.a.admin_email
    for i in range(1, ACCOUNT_FREE_FAILURES + 3):
        await login(f"127.0.1.{i}", admin, "guess")
    poller = "127.0.1.1"
    for _ in range(8):
        wait = (await login(poller, admin, "poll")).retry_after
        assert 1 <= wait <= 60
        clock.advance(seconds=wait)
        assert (await login(poller, admin, "poll")).code == "UNAUTHENTICATED"
    clock.advance(seconds=30)
    waiting = (await login(poller, admin, "poll")).retry_after
    assert waiting == 30
    # A new browser (no device cookie) at an address that never failed on the account.
    assert (await login("127.0.0.77", admin, PASSWORD)).code == "OK"
    # Its success hands the poller no earlier opening.
    assert (await login(poller, admin, "poll")).retry_after == waiting


async def test_a_botnet_gets_one_checked_guess_per_fresh_address_per_window_and_the_openings(
    login: Login, world: Any, clock: Clock, rt: Runtime
) -> None:
    """Review finding 3 and its trade-off: a spread attack is slowed, never a lock-out.
    Each fresh address is one checked guess per window; everything else is rationed
    to one guess per opening (docs/decisions/login-throttle.md)."""
    admin = world.a.admin_email
    browser = (await login("127.0.0.200", admin, PASSWORD)).device
    poller = "127.0.0.9"
    assert (await login(poller, admin, "poll")).code == "UNAUTHENTICATED"
    for i in range(1, ACCOUNT_FREE_FAILURES + 1):
        await login(f"127.0.3.{i}", admin, "guess")
    botnet = [f"127.0.1.{i}" for i in range(1, 101)]
    # The account is rationing, its opening closed: each fresh address gets exactly
    # one checked guess, its second waits.
    codes = await _botnet(login, admin, botnet, 2)
    assert codes.count("UNAUTHENTICATED") == len(botnet)
    assert all(codes[2 * i : 2 * i + 2].count("UNAUTHENTICATED") == 1 for i in range(100))
    assert set(codes) == {"UNAUTHENTICATED", "TOO_MANY_ATTEMPTS"}
    # Spent: the botnet is now rationed, and its refusals write nothing.
    writes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(statement)

    engine = rt.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert set(await _botnet(login, admin, botnet, 2)) == {"TOO_MANY_ATTEMPTS"}
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert writes == []
    # At an opening all of it together gets exactly one guess.
    waited = (await login(poller, admin, "poll")).retry_after
    assert waited == 60
    clock.advance(seconds=waited)
    assert (await _botnet(login, admin, botnet, 2)).count("UNAUTHENTICATED") == 1
    # A poller takes every opening for a window...
    for _ in range(16):
        wait = (await login(poller, admin, "poll")).retry_after
        assert 1 <= wait <= 60
        clock.advance(seconds=wait)
        assert (await login(poller, admin, "poll")).code == "UNAUTHENTICATED"
    # ...after which each address of the botnet is fresh again: one guess each.
    assert (await _botnet(login, admin, botnet, 2)).count("UNAUTHENTICATED") == len(botnet)
    # The administrator's browser, known to the account, is never held back by it.
    assert (await login("127.0.1.1", admin, PASSWORD, device=browser)).code == "OK"
    # Nor is another account.
    assert (await login("127.0.1.1", world.a.viewer_email, PASSWORD)).code == "OK"


async def test_an_address_that_failed_on_a_rationed_account_waits_for_an_opening(
    login: Login, world: Any, clock: Clock
) -> None:
    admin = world.a.admin_email
    for i in range(1, ACCOUNT_FREE_FAILURES + 1):
        assert (await login(f"127.0.1.{i}", admin, "guess")).code == "UNAUTHENTICATED"
    typo = "127.0.0.5"
    assert (await login(typo, admin, "typo")).code == "UNAUTHENTICATED"
    refused = await login(typo, admin, PASSWORD)
    assert 1 <= refused.retry_after <= 60
    # An IPv4 address is a network of its own: the neighbour at .6 is not held back.
    assert (await login("127.0.0.6", admin, PASSWORD)).code == "OK"
    clock.advance(seconds=refused.retry_after)
    assert (await login(typo, admin, PASSWORD)).code == "OK"


async def test_a_device_cookie_counts_only_for_its_own_account_and_only_when_signed(
    login: Login, world: Any
) -> None:
    admin, viewer = world.a.admin_email, world.a.viewer_email
    viewer_browser = (await login("127.0.0.3", viewer, PASSWORD)).device
    assert viewer_browser
    for i in range(1, 31):
        await login(f"127.0.3.{i}", admin, "guess")
    # The viewer's address fails on the admin's account too: it is rationed from now on.
    assert (await login("127.0.0.3", admin, "guess")).code == "UNAUTHENTICATED"
    # The viewer's cookie says nothing about the admin's account; a forged one neither.
    forged = viewer_browser[:-4] + "AAAA"
    for device in (viewer_browser, forged, "garbage", "x" * 5000):
        assert (await login("127.0.0.3", admin, PASSWORD, device=device)).code == (
            "TOO_MANY_ATTEMPTS"
        )


async def test_a_known_device_has_its_own_growing_delay(
    login: Login, world: Any, clock: Clock
) -> None:
    """Somebody with the browser but not the password is slowed on it like anyone."""
    device = (await login("127.0.0.3", world.a.admin_email, PASSWORD)).device
    for _ in range(3):
        answer = await login("127.0.0.3", world.a.admin_email, "wrong", device=device)
        assert answer.code == "UNAUTHENTICATED"
    waits = []
    for _ in range(3):
        answer = await login("127.0.0.3", world.a.admin_email, "wrong", device=device)
        waits.append(answer.retry_after)
        clock.advance(seconds=waits[-1])
        answer = await login("127.0.0.3", world.a.admin_email, "wrong", device=device)
        assert answer.code == "UNAUTHENTICATED"
    assert waits == [1, 2, 4]
    clock.advance(seconds=8)
    assert (await login("127.0.0.3", world.a.admin_email, PASSWORD, device=device)).code == "OK"


async def test_one_address_cannot_spray_many_accounts_and_forwarded_headers_do_not_help(
    login: Login, world: Any, clock: Clock
) -> None:
    # A client that is no trusted proxy cannot pick its address with X-Forwarded-For.
    for i in range(20):
        answer = await login(
            "127.0.0.2",
            f"user{i}@spray.example",
            "Sommer2026!",
            headers={"X-Forwarded-For": f"127.0.1.{i}"},
        )
        assert answer.code == "UNAUTHENTICATED"
    wait = (
        await login(
            "127.0.0.2",
            "user99@spray.example",
            "Sommer2026!",
            headers={"X-Forwarded-For": "127.0.1.99"},
        )
    ).retry_after
    assert 1 <= wait <= 60
    # Only that address is slowed: the account's owner elsewhere signs in.
    assert (await login("127.0.0.3", world.a.admin_email, PASSWORD)).code == "OK"
    clock.advance(seconds=wait)
    assert (await login("127.0.0.2", "user99@spray.example", "x")).code == "UNAUTHENTICATED"


async def test_a_success_keeps_the_failures_of_attempts_checked_beside_it(
    login: Login, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding 15: a success deleted all the pair's failures, also those of
    guesses checked while it was in flight."""
    real = security.verify_password
    checking, release = threading.Event(), threading.Event()

    def held(password_hash: str | None, password: str) -> bool:
        if password == PASSWORD:
            checking.set()
            release.wait(10)
        return real(password_hash, password)

    monkeypatch.setattr("api.services.auth.verify_password", held)
    admin = world.a.admin_email
    signing_in = asyncio.create_task(login("127.0.0.2", admin, PASSWORD))
    # The sign-in is admitted and its password being checked (held above).
    assert await asyncio.to_thread(checking.wait, 10)
    assert (await login("127.0.0.2", admin, "guess 1")).code == "UNAUTHENTICATED"
    release.set()
    assert (await signing_in).code == "OK"
    # The guess checked beside the success still counts: two more are free, then a wait.
    for i in range(2, 4):
        assert (await login("127.0.0.2", admin, f"guess {i}")).code == "UNAUTHENTICATED"
    assert (await login("127.0.0.2", admin, "guess 4")).retry_after == 1


async def test_a_success_forgets_its_pair_but_not_the_accounts_failures_from_elsewhere(
    login: Login, world: Any
) -> None:
    admin = world.a.admin_email
    for i in range(10, 10 + ACCOUNT_FREE_FAILURES - 3):
        assert (await login(f"127.0.0.{i}", admin, "guess")).code == "UNAUTHENTICATED"
    for _ in range(2):
        assert (await login("127.0.0.2", admin, "typo")).code == "UNAUTHENTICATED"
    assert (await login("127.0.0.2", admin, PASSWORD)).code == "OK"
    # The account's failures stay: the next guess from elsewhere is its tenth,
    # and the one after it, from an address that failed on the account, waits.
    assert (await login("127.0.0.40", admin, "guess")).code == "UNAUTHENTICATED"
    assert (await login("127.0.0.40", admin, "guess")).retry_after == 1
    # The address that signed in has no failures left on the account: a first
    # guess from it is checked like any address's first, and grows the wait as
    # every failure of the account does.
    assert (await login("127.0.0.2", admin, "typo")).code == "UNAUTHENTICATED"
    assert (await login("127.0.0.2", admin, "typo")).retry_after == 2


async def test_refusals_write_nothing(login: Login, world: Any, rt: Runtime) -> None:
    """Review finding 5: each refusal cost two write transactions (a flood became writes)."""
    for _ in range(3):
        await login("127.0.0.2", world.a.admin_email, "wrong")
    writes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(statement)

    engine = rt.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        answers = await asyncio.gather(
            *(login("127.0.0.2", world.a.admin_email, "wrong") for _ in range(30))
        )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert {a.code for a in answers} == {"TOO_MANY_ATTEMPTS"}
    assert writes == []


@pytest.mark.parametrize("length", [321, 4000])
async def test_an_overlong_email_is_refused_before_anything_is_stored(
    login: Login, rt: Runtime, length: int
) -> None:
    # Longer than RFC 5321's 320 characters, and within the input guard's 4,000,
    # so it is the sign-in's own check that answers.
    email = "a" * (length - len("@example.com")) + "@example.com"
    answer = await login("127.0.0.2", email, "x")
    assert answer.code == "BAD_USER_INPUT"
    assert answer.body["errors"][0]["extensions"]["field"] == "email"
    assert await _rows(rt) == 0


async def test_a_thousand_bogus_logins_from_many_addresses_leave_at_most_the_cap(
    rt: Runtime, clock: Clock
) -> None:
    """Review finding 4: the rows were bounded per address only (1,000 addresses, 1,005 rows)."""
    cap = 60
    small = dataclasses.replace(rt, settings=make_settings(login_max_counters=cap))

    async with serving(small) as login:
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> str:
            async with gate:
                email = f"{uuid.uuid4().hex}{'x' * 250}@bogus.example"
                address = f"127.0.{10 + i // 250}.{1 + i % 250}"
                answer: Answer = await login(address, email, "x" * 1000)
                return str(answer.code)

        codes = await asyncio.gather(*(one(i) for i in range(1000)))
        assert set(codes) <= {"UNAUTHENTICATED", "TOO_MANY_ATTEMPTS"}
        assert 0 < await _rows(rt) <= cap
        async with rt.db.reading() as s:
            stored = [str(v) for v in await s.scalars(select(LoginCounter.key))]
        assert all(len(v) == 64 and "bogus" not in v for v in stored)
        # Once the window has passed, new attempts clear the old ones away.
        clock.advance(minutes=15, seconds=1)
        for i in range(5):
            await login(f"127.0.9.{i + 1}", f"late{i}@bogus.example", "x")
        assert await _rows(rt) <= 3 * 5


# --------------------------------------------------------------------------- the rule alone


def test_the_wait_doubles_from_one_second_after_the_free_failures_up_to_the_cap() -> None:
    from api.domain.login_throttle import backoff

    assert [backoff(n, 3, 60) for n in range(0, 11)] == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff(10_000, 3, 60) == 60


def test_a_network_is_fresh_on_an_account_until_it_fails_and_again_a_window_later() -> None:
    from datetime import UTC, datetime, timedelta

    from api.domain.login_throttle import Counter, Policy, fresh

    policy = Policy(pair_free_failures=3, max_delay_seconds=60, window_seconds=900)
    now = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    assert fresh(None, policy, now)
    failed = Counter(failures=1, next_allowed_at=now, updated_at=now)
    assert not fresh(failed, policy, now + timedelta(seconds=899))
    assert fresh(failed, policy, now + timedelta(seconds=900))
    # A success gave back the network's failures: it is clean again.
    assert fresh(Counter(failures=0, next_allowed_at=now, updated_at=now), policy, now)


def test_client_and_account_keys() -> None:
    from api.domain.login_throttle import account_key, client_key, keys

    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("127.0.0.2") == "127.0.0.2"
    assert len(client_key("x" * 500)) == 64
    key = account_key(b"secret", "someone@example.com")
    assert len(key) == 64 and "someone" not in key
    assert key != account_key(b"another secret", "someone@example.com")
    untrusted = keys(b"secret", key, "192.0.2.1", None)
    assert [k.kind.value for k in untrusted] == ["pair", "account", "address"]
    known = keys(b"secret", key, "192.0.2.1", "nonce")
    assert [k.kind.value for k in known] == ["device"] and known[0].trusted
    assert all(len(k.digest) == 64 for k in untrusted + known)


def test_a_device_cookie_is_known_only_for_its_account_signed_and_unexpired() -> None:
    from datetime import UTC, datetime, timedelta

    from api.domain.device_cookie import MAX_TOKENS, issue, known_nonce

    now = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    later = now + timedelta(days=365)
    cookie = issue(b"secret", "account-a", None, later)
    nonce = known_nonce(b"secret", "account-a", cookie, now)
    assert nonce is not None and nonce in cookie
    assert known_nonce(b"secret", "account-b", cookie, now) is None
    assert known_nonce(b"another secret", "account-a", cookie, now) is None
    assert known_nonce(b"secret", "account-a", cookie, later) is None  # expired
    forged = cookie.replace(cookie.split(".")[1], str(int(later.timestamp()) + 86400))
    assert known_nonce(b"secret", "account-a", forged, now) is None  # longer life, same signature
    # One browser, several accounts: each keeps its token; signing in again replaces it.
    both = issue(b"secret", "account-b", cookie, later)
    assert known_nonce(b"secret", "account-a", both, now) == nonce
    assert known_nonce(b"secret", "account-b", both, now) is not None
    again = issue(b"secret", "account-a", both, later)
    assert again.count("~") == 1 and known_nonce(b"secret", "account-a", again, now) != nonce
    crowded = again
    for i in range(10):
        crowded = issue(b"secret", f"account-{i}", crowded, later)
    assert crowded.count("~") == MAX_TOKENS - 1
