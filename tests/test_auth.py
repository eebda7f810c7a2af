import pytest
from sqlalchemy import select

from api.models import Session, User
from api.security import verify_password
from tests.conftest import error_codes
from tests.world import PASSWORD

LOGIN = """mutation($e: String!, $p: String!) {
  login(email: $e, password: $p) { token expiresAt user { email role } }
}"""


async def test_login_sets_a_strict_httponly_cookie_and_returns_a_token(gql, client, world):
    response = await client.post(
        "/graphql",
        json={"query": LOGIN, "variables": {"e": world.a.admin_email, "p": PASSWORD}},
    )
    body = response.json()
    assert body["data"]["login"]["user"] == {"email": world.a.admin_email, "role": "TENANT_ADMIN"}
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    for name in ("rundruf_session", "rundruf_device"):
        assert "HttpOnly" in cookies[name]
        assert "SameSite=strict" in cookies[name] or "SameSite=Strict" in cookies[name]
        assert "Secure" in cookies[name]
    # The device cookie outlives the session by far: it marks the browser as known
    # to the account (docs/decisions/login-throttle.md).
    assert "Max-Age=31536000" in cookies["rundruf_device"]
    # The cookie alone signs the browser in.
    me = await gql.ok("{ me { email } }")
    assert me["me"]["email"] == world.a.admin_email
    # And the token alone signs an API client in.
    client.cookies.clear()
    token = body["data"]["login"]["token"]
    assert (await gql.as_(token).ok("{ me { email } }"))["me"]["email"] == world.a.admin_email


async def test_the_token_is_stored_only_as_a_hash(gql, rt, world):
    data = await gql.ok(LOGIN, e=world.a.admin_email, p=PASSWORD)
    token = data["login"]["token"]
    async with rt.db.reading() as s:
        hashes = list(await s.scalars(select(Session.token_hash)))
    assert token not in hashes
    assert all(len(h) == 64 for h in hashes)


async def test_it_rejects_a_wrong_password_without_saying_which_part_was_wrong(gql, world):
    wrong_password = await gql(LOGIN, e=world.a.admin_email, p="nope-nope-nope")
    unknown_user = await gql(LOGIN, e="nobody@owner.example", p=PASSWORD)
    assert error_codes(wrong_password) == error_codes(unknown_user) == ["UNAUTHENTICATED"]
    assert wrong_password["errors"][0]["message"] == unknown_user["errors"][0]["message"]


async def test_it_slows_an_account_and_address_after_three_failures_without_a_lockout(
    gql, world, clock
):
    for _ in range(3):
        assert error_codes(await gql(LOGIN, e=world.a.admin_email, p="bad")) == ["UNAUTHENTICATED"]
    slowed = await gql(LOGIN, e=world.a.admin_email, p=PASSWORD)
    assert error_codes(slowed) == ["TOO_MANY_ATTEMPTS"]
    assert slowed["errors"][0]["extensions"]["retryAfterSeconds"] == 1
    # Another account from the same address is not held back.
    assert (await gql.ok(LOGIN, e=world.a.viewer_email, p=PASSWORD))["login"]["user"]
    clock.advance(seconds=1)
    assert (await gql.ok(LOGIN, e=world.a.admin_email, p=PASSWORD))["login"]["user"]


async def test_the_addresses_of_one_ipv6_64_count_as_one_client(rt, world):
    from api.errors import TooManyAttempts, Unauthenticated
    from api.services import auth

    for i in range(3):
        with pytest.raises(Unauthenticated):
            await auth.login(rt, world.a.admin_email, "bad", f"2001:db8:1:2::{i + 1:x}")
    with pytest.raises(TooManyAttempts):
        await auth.login(rt, world.a.admin_email, PASSWORD, "2001:db8:1:2:ffff::9")
    # The next /64 is another client.
    assert await auth.login(rt, world.a.admin_email, PASSWORD, "2001:db8:1:3::1")


async def test_the_three_free_failures_are_each_checked_at_once(gql, world):
    for _ in range(3):
        assert error_codes(await gql(LOGIN, e=world.a.admin_email, p="bad")) == ["UNAUTHENTICATED"]


async def test_a_spread_attack_from_many_ipv6_64s_is_rationed_like_one_from_many_addresses(
    rt, world
):
    """Each /64 is one network: its first guess of the window is checked at once
    (docs/decisions/login-throttle.md), any other address in it is rationed with
    the account's counter like every network that failed on the account."""
    from api.errors import TooManyAttempts, Unauthenticated
    from api.services import auth

    async def outcomes(host: int) -> list[str]:
        seen = []
        for i in range(100):
            try:
                await auth.login(rt, world.a.admin_email, "guess", f"2001:db8:{i:x}::{host}")
            except Unauthenticated:
                seen.append("checked")
            except TooManyAttempts:
                seen.append("throttled")
        return seen

    assert await outcomes(1) == ["checked"] * 100
    assert await outcomes(2) == ["throttled"] * 100


async def test_logout_ends_the_session(gql, world):
    token = world.tokens["owner"]
    assert await gql.as_(token).ok("mutation { logout }") == {"logout": True}
    assert error_codes(await gql.as_(token)("{ me { email } }")) == ["UNAUTHENTICATED"]


async def test_an_expired_session_is_refused(gql, world, clock):
    clock.advance(hours=12, seconds=1)
    assert error_codes(await gql.as_(world.tokens["owner"])("{ me { email } }")) == [
        "UNAUTHENTICATED"
    ]


async def test_change_password_checks_the_current_one_and_ends_other_sessions(gql, rt, world):
    other = world.tokens["owner"]
    data = await gql.ok(LOGIN, e=world.a.admin_email, p=PASSWORD)
    mine = gql.as_(data["login"]["token"])
    change = (
        "mutation($c: String!, $n: String!) "
        "{ changePassword(currentPassword: $c, newPassword: $n) }"
    )
    wrong = await mine(change, c="not it", n="a brand new password")
    assert error_codes(wrong) == ["BAD_USER_INPUT"]
    short = await mine(change, c=PASSWORD, n="short")
    assert error_codes(short) == ["BAD_USER_INPUT"]
    assert short["errors"][0]["extensions"]["field"] == "newPassword"
    assert await mine.ok(change, c=PASSWORD, n="a brand new password")
    assert (await mine.ok("{ me { email } }"))["me"]["email"] == world.a.admin_email
    assert error_codes(await gql.as_(other)("{ me { email } }")) == ["UNAUTHENTICATED"]
    async with rt.db.reading() as s:
        user = await s.scalar(select(User).where(User.email == world.a.admin_email))
    assert verify_password(user.password_hash, "a brand new password")
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_a_deactivated_user_is_signed_out_and_cannot_sign_in(gql, world):
    admin = gql.as_(world.tokens["platform"])
    await admin.ok(
        "mutation($id: ID!) { deactivateUser(id: $id) { active } }", id=str(world.a.admin_user_id)
    )
    assert error_codes(await gql.as_(world.tokens["owner"])("{ me { email } }")) == [
        "UNAUTHENTICATED"
    ]
    assert error_codes(await gql(LOGIN, e=world.a.admin_email, p=PASSWORD)) == ["UNAUTHENTICATED"]


async def test_a_deactivated_tenant_signs_out_all_its_users(gql, world):
    admin = gql.as_(world.tokens["platform"])
    await admin.ok(
        "mutation($id: ID!) { deactivateTenant(id: $id) { active } }", id=str(world.a.tenant_id)
    )
    assert error_codes(await gql.as_(world.tokens["viewer"])("{ me { email } }")) == [
        "UNAUTHENTICATED"
    ]
    assert (await gql.as_(world.tokens["outsider"]).ok("{ me { email } }"))["me"]


async def test_parallel_guesses_do_not_slip_past_the_throttle(rt, world):
    import asyncio

    from api.errors import TooManyAttempts, Unauthenticated
    from api.services import auth

    async def guess(i: int) -> str:
        try:
            await auth.login(rt, world.a.admin_email, f"guess {i}", "192.0.2.7")
        except Unauthenticated:
            return "checked"
        except TooManyAttempts:
            return "throttled"
        return "signed in"

    outcomes = await asyncio.gather(*(guess(i) for i in range(30)))
    assert outcomes.count("signed in") == 0
    # At most the three free guesses were checked; the others waited.
    assert outcomes.count("checked") <= 3
