"""The health report's description of the installation (issue 13): the PBX adapter, the
dialer and the SIP registration with its last error; stored, shown, and refused when
malformed, with the field named and nothing changed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from api.domain import health as health_words
from api.models import Language
from edge_agent.sip import registration
from tests.conftest import error_codes
from tests.test_agent_service import HEALTH, health
from tests.test_authorization import snapshot

SHOWN = """query($t: ID) { installations(tenantId: $t) {
  id pbxAdapter dialer simulated
  sipRegistration { state since lastError { code params detail at } }
} }"""
SINCE = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
WEBSITE_TEXTS = Path(__file__).resolve().parent.parent / "frontend_stub" / "js" / "texts"


def sip(state: str = "failed", **error: Any) -> dict[str, Any]:
    last_error = {
        "code": "refused",
        "params": {"status": 403, "reason": "Forbidden"},
        "detail": "REGISTER refused: 403 Forbidden",
        "at": SINCE.isoformat(),
        **error,
    }
    return {"state": state, "since": SINCE.isoformat(), "lastError": last_error}


async def shown(gql, world, token: str = "platform") -> dict[str, Any]:
    data = await gql.as_(world.tokens[token]).ok(SHOWN, t=str(world.a.tenant_id))
    [found] = [i for i in data["installations"] if i["id"] == str(world.a.installation_id)]
    return found


async def test_a_report_stores_what_the_installation_runs_on_and_its_registration(
    gql, world, clock
):
    agent = gql.as_(world.tokens["agent_a"])
    report = health(clock.now, pbxAdapter="swyx", dialer="sip", sipRegistration=sip())
    await agent.ok(HEALTH, **report)
    found = await shown(gql, world)
    assert found["pbxAdapter"] == "SWYX" and found["dialer"] == "SIP"
    assert found["simulated"] is False
    registration = found["sipRegistration"]
    assert registration["state"] == "FAILED"
    assert datetime.fromisoformat(registration["since"]) == SINCE
    assert registration["lastError"]["code"] == "refused"
    assert registration["lastError"]["params"] == {"status": 403, "reason": "Forbidden"}
    assert registration["lastError"]["detail"] == "REGISTER refused: 403 Forbidden"
    # The tenant's own users read the same on their installation.
    assert await shown(gql, world, "viewer") == found


async def test_a_simulator_is_marked_and_has_no_registration(gql, world, clock):
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(HEALTH, **health(clock.now, pbxAdapter="swyx", dialer="sim"))
    found = await shown(gql, world)
    assert (found["dialer"], found["simulated"], found["sipRegistration"]) == ("SIM", True, None)
    clock.advance(seconds=1)
    await agent.ok(HEALTH, **health(clock.now, pbxAdapter="sim", dialer="sip"))
    assert (await shown(gql, world))["simulated"] is True


async def test_an_older_agents_report_still_counts_and_says_nothing_about_it(gql, world, clock):
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(
        HEALTH, **health(clock.now, pbxAdapter="swyx", dialer="sip", sipRegistration=sip())
    )
    clock.advance(seconds=5)
    await agent.ok(HEALTH, **health(clock.now))  # without the new fields
    found = await shown(gql, world)
    assert (found["pbxAdapter"], found["dialer"], found["sipRegistration"]) == (None, None, None)
    assert found["simulated"] is False


async def test_the_longest_values_are_accepted(gql, world, clock):
    error = sip(
        code="c" * 32,
        detail="d" * 200,
        params={f"p{i}": "v" * 100 for i in range(7)} | {"n": 2**31 - 1},
    )
    report = health(clock.now, pbxAdapter="swyx", dialer="sip", sipRegistration=error)
    await gql.as_(world.tokens["agent_a"]).ok(HEALTH, **report)
    assert (await shown(gql, world))["sipRegistration"]["lastError"]["detail"] == "d" * 200


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"pbxAdapter": "asterisk"}, "pbxAdapter"),
        ({"pbxAdapter": "SIM"}, "pbxAdapter"),
        ({"dialer": "x" * 10_000}, "dialer"),
        ({"dialer": "sim", "sipRegistration": sip()}, "sipRegistration"),
        ({"sipRegistration": sip(state="online")}, "sipRegistration.state"),
        ({"sipRegistration": {**sip(), "since": "2026-12-07T08:00:00"}}, "sipRegistration.since"),
        ({"sipRegistration": sip(code="403 Forbidden")}, "sipRegistration.lastError.code"),
        ({"sipRegistration": sip(code="c" * 33)}, "sipRegistration.lastError.code"),
        ({"sipRegistration": sip(detail="d" * 201)}, "sipRegistration.lastError.detail"),
        ({"sipRegistration": sip(detail="a\nb")}, "sipRegistration.lastError.detail"),
        ({"sipRegistration": sip(at="2026-12-07T08:00:00")}, "sipRegistration.lastError.at"),
        ({"sipRegistration": sip(params=[403])}, "sipRegistration.lastError.params"),
        (
            {"sipRegistration": sip(params={"status": {"deep": 1}})},
            "sipRegistration.lastError.params",
        ),
        ({"sipRegistration": sip(params={"status": True})}, "sipRegistration.lastError.params"),
        ({"sipRegistration": sip(params={"status": 2**31})}, "sipRegistration.lastError.params"),
        ({"sipRegistration": sip(params={"bad key": 1})}, "sipRegistration.lastError.params"),
        (
            {"sipRegistration": sip(params={"reason": "r" * 101})},
            "sipRegistration.lastError.params",
        ),
        ({"sipRegistration": sip(params={"reason": "a\rb"})}, "sipRegistration.lastError.params"),
        # Not only C0 and DEL: C1 (NEL), the line separator and a bidi override reach mails.
        ({"sipRegistration": sip(detail="a\u0085b")}, "sipRegistration.lastError.detail"),
        ({"sipRegistration": sip(detail="a\u2028b")}, "sipRegistration.lastError.detail"),
        ({"sipRegistration": sip(detail="\u202egnp.exe")}, "sipRegistration.lastError.detail"),
        (
            {"sipRegistration": sip(params={"reason": "x\u2029"})},
            "sipRegistration.lastError.params",
        ),
        ({"agentVersion": "2.0\u2028"}, "agentVersion"),
        # Times: converting to UTC overflows, or far from any real clock.
        (
            {"sipRegistration": {**sip(), "since": "0001-01-01T00:00:00+14:00"}},
            "sipRegistration.since",
        ),
        (
            {"sipRegistration": {**sip(), "since": "9999-12-31T23:00:00-05:00"}},
            "sipRegistration.since",
        ),
        ({"sipRegistration": {**sip(), "since": "9999-12-31T23:59:59Z"}}, "sipRegistration.since"),
        ({"sipRegistration": {**sip(), "since": "1999-12-31T23:59:59Z"}}, "sipRegistration.since"),
        ({"sipRegistration": sip(at="9999-12-31T23:00:00-05:00")}, "sipRegistration.lastError.at"),
        ({"sipRegistration": sip(at="0001-01-01T00:00:00+14:00")}, "sipRegistration.lastError.at"),
        (
            {"sipRegistration": sip(params={f"p{i}": i for i in range(9)})},
            "sipRegistration.lastError.params",
        ),
    ],
)
async def test_bad_values_are_refused_naming_the_field_and_change_nothing(
    gql, rt, world, clock, bad, field
):
    values = {"pbxAdapter": "swyx", "dialer": "sip", **bad}
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["agent_a"])(HEALTH, **health(clock.now, **values))
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field
    assert await snapshot(rt) == before


@pytest.mark.parametrize(
    "reported_at",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00", "9999-12-31T23:59:59Z"],
)
async def test_a_report_time_out_of_range_is_refused_naming_it(gql, rt, world, clock, reported_at):
    before = await snapshot(rt)
    report = health(clock.now)
    report["input"]["reportedAt"] = reported_at
    body = await gql.as_(world.tokens["agent_a"])(HEALTH, **report)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "reportedAt"
    assert await snapshot(rt) == before


async def post_ascii(gql, token: str, query: str, **variables: Any) -> dict[str, Any]:
    """Posts as JSON with \\u escapes, which can carry a lone surrogate (httpx's own JSON
    is UTF-8, which cannot)."""
    response = await gql.client.post(
        "/graphql",
        content=json.dumps({"query": query, "variables": variables}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"sipRegistration": sip(detail="\ud800")}, "sipRegistration.lastError.detail"),
        ({"sipRegistration": sip(params={"reason": "\udfff"})}, "sipRegistration.lastError.params"),
        ({"agentVersion": "2.0\ud800"}, "agentVersion"),
    ],
)
async def test_a_lone_surrogate_is_refused_naming_the_field(gql, rt, world, clock, values, field):
    before = await snapshot(rt)
    report = health(clock.now, **{"pbxAdapter": "swyx", "dialer": "sip", **values})
    body = await post_ascii(gql, world.tokens["agent_a"], HEALTH, **report)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field
    assert await snapshot(rt) == before


async def test_times_are_stored_in_utc_and_a_clock_somewhat_ahead_still_counts(gql, world, clock):
    ahead = clock.now + timedelta(hours=20)  # a badly set machine: its report still counts
    local = ahead.astimezone(timezone(timedelta(hours=-5)))
    registration = {**sip("registered"), "since": local.isoformat()}
    registration["lastError"] = None
    report = health(ahead, pbxAdapter="swyx", dialer="sip", sipRegistration=registration)
    await gql.as_(world.tokens["agent_a"]).ok(HEALTH, **report)
    found = await shown(gql, world)
    assert datetime.fromisoformat(found["sipRegistration"]["since"]) == ahead


async def test_a_silent_installations_registration_reads_unknown(gql, world, clock):
    agent = gql.as_(world.tokens["agent_a"])
    report = health(clock.now, pbxAdapter="swyx", dialer="sip", sipRegistration=sip("registered"))
    await agent.ok(HEALTH, **report)
    assert (await shown(gql, world))["sipRegistration"]["state"] == "REGISTERED"
    clock.advance(minutes=10)
    found = await shown(gql, world)
    # What it runs on stays (the simulator label with it); the registration is not known now.
    assert (found["pbxAdapter"], found["dialer"], found["sipRegistration"]) == ("SWYX", "SIP", None)


def test_every_code_the_agent_sends_is_put_into_words_in_mails_and_on_the_website():
    # The agent lists its codes in its module's docstring, one "- `code`" line each.
    agent_codes = set(re.findall(r"^- `(\w+)`", registration.__doc__ or "", re.MULTILINE))
    assert agent_codes == set(health_words.CODES)
    texts = {
        language: (WEBSITE_TEXTS / f"{language}.js").read_text(encoding="utf-8")
        for language in ("de", "en")
    }
    for code in agent_codes:
        error = health_words.SipError(code, SINCE, {"status": 403, "host": "pbx", "address": "::"})
        for language in Language:
            words = health_words.describe_sip_error(language, error)
            unknown = health_words.SipError(code + "X", SINCE)  # told by the fallback
            fallback = health_words.describe_sip_error(language, unknown)
            assert words != fallback.replace(code + "X", code), (code, language)
        for language, source in texts.items():
            assert f'"sip.error.{code}":' in source, (code, language)
