"""No secret in any stored text (issue 14, point 5), end to end: real `rundruf serve`,
real `rundruf agent run` on the SwyxWare simulator, PostgreSQL and Redis.

The secrets are planted where failures see them (the simulator's state, a command's
secrets, the texts an agent reports); afterwards every text, JSON and number column
of every table is read and searched for each of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from api.models import Base
from tests.processes import Client
from tests.test_agent_e2e import (
    PASSWORD,
    Site,
    Stack,
    convert,
    group_named,
    new_site,
    verify,
    wait_command,
)
from tests.test_agent_e2e import stack as stack

PBX_PASSWORD = "swyx-pass"
PIN = "90817263"
NEW_PIN = "55667788"


@pytest.fixture
def site(stack: Stack, tmp_path: Path) -> Iterator[Site]:
    site = new_site(stack, tmp_path)
    try:
        verify(site)
        group = convert(site, group_named(site, "Brandschutzhelfer"))
        assert group["pin"]
        change_pin(site, PIN)
        yield site
    finally:
        site.agent.stop()


def change_pin(site: Site, pin: str, ok: bool = True) -> dict[str, Any]:
    group = group_named(site, "Brandschutzhelfer")
    command = site.admin(
        "mutation($g: ID!, $p: String!) { updateBroadcastAgent(groupId: $g, pin: $p) { id } }",
        g=group["id"],
        p=pin,
    )["updateBroadcastAgent"]
    result = wait_command(site.admin, command["id"])
    assert (result["status"] == "SUCCEEDED") is ok, result
    return result


def token_of(site: Site) -> str:
    token = json.loads((site.agent.state / "agent.json").read_text(encoding="utf-8"))["token"]
    assert isinstance(token, str) and token.startswith("rda_")
    return token


def damage_simulator(site: Site, token: str) -> None:
    """The state file, its password and PINs in it, the token planted, no longer UTF-8."""
    path = site.sim.state_path
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["admin"]["password"] == PBX_PASSWORD
    assert PIN in [u["agent_pin"] for u in data["users"]]
    data["planted"] = {"token": token}
    path.write_bytes(json.dumps(data).encode() + b"\xff")


@contextmanager
def database(stack: Stack) -> Iterator[sa.Connection]:
    engine = sa.create_engine(stack.env["RUNDRUF_DATABASE_URL"])
    try:
        with engine.connect() as db:
            yield db
    finally:
        engine.dispose()


def secrets(stack: Stack, site: Site) -> dict[str, str]:
    """Every secret in play: the planted ones, and every PIN and password the server holds
    sealed (random PINs of enableBroadcast too), opened with the server's key."""
    found = {
        "pbx password": PBX_PASSWORD,
        "pin": PIN,
        "new pin": NEW_PIN,
        "agent token": token_of(site),
        "user password": PASSWORD,
    }
    box = Fernet(stack.env["RUNDRUF_SECRET_KEY"].encode())
    with database(stack) as db:
        sealed = [
            *db.execute(sa.text("SELECT sealed_payload FROM command")).scalars(),
            *db.execute(sa.text("SELECT pin_sealed FROM broadcast_group")).scalars(),
            *db.execute(sa.text("SELECT admin_password_sealed FROM pbx_settings")).scalars(),
        ]
    for n, value in enumerate(v for v in sealed if v):
        opened = box.decrypt(value.encode()).decode()
        values = json.loads(opened) if opened.startswith("{") else {"value": opened}
        for key, secret in values.items():
            found[f"sealed {n} {key}"] = str(secret)
    return found


def stored_texts(stack: Stack) -> Iterator[tuple[str, str]]:
    """(table.column, text) for every value of every table that is text, JSON or a number."""
    with database(stack) as db:
        for table in Base.metadata.sorted_tables:
            for row in db.execute(sa.select(table)).mappings():
                for column, value in row.items():
                    if isinstance(value, dict | list):
                        yield f"{table.name}.{column}", json.dumps(value, ensure_ascii=False)
                    elif isinstance(value, str | int) and not isinstance(value, bool):
                        yield f"{table.name}.{column}", str(value)


def leaks(stack: Stack, site: Site) -> list[tuple[str, str, str]]:
    planted = secrets(stack, site)
    return [
        (where, name, text[:300])
        for where, text in stored_texts(stack)
        for name, secret in planted.items()
        if secret in text
    ]


def test_a_damaged_simulator_puts_no_secret_into_any_stored_text(stack, site):
    damage_simulator(site, token_of(site))
    groups = {g["name"]: g for g in site.admin("{ groups { id name } }")["groups"]}
    failing = [
        ('mutation { createGroup(name: "Nachtschicht") { id } }', "createGroup"),
        (
            "mutation($g: ID!) { enableBroadcast(groupId: $g) { id } }",
            "enableBroadcast",
            {"g": groups["Empfang"]["id"]},
        ),
        (
            "mutation($g: ID!) { disableBroadcast(groupId: $g) { id } }",
            "disableBroadcast",
            {"g": groups["Brandschutzhelfer"]["id"]},
        ),
        ("mutation { verifyPbxCredentials { command { id } } }", "verifyPbxCredentials"),
    ]
    errors = []
    for query, name, *variables in failing:
        data = site.admin(query, **(variables[0] if variables else {}))[name]
        command_id = data["command"]["id"] if "command" in data else data["id"]
        result = wait_command(site.admin, command_id)
        assert result["status"] == "FAILED", result
        errors.append(result["error"])
    errors.append(change_pin(site, NEW_PIN, ok=False)["error"])
    # The agent said what went wrong, only without the state file in it.
    assert all("is damaged: UnicodeDecodeError" in e for e in errors[:-1]), errors
    settings = site.admin("{ pbxSettings { verificationState verificationError } }")
    assert settings["pbxSettings"]["verificationState"] == "FAILED"
    assert leaks(stack, site) == []


def test_the_server_stores_no_secret_an_agent_reports(stack, site):
    site.agent.stop()  # the test speaks as the agent, with its token
    token = token_of(site)
    agent = Client(site.admin.url.removesuffix("/graphql"), token)
    group = group_named(site, "Brandschutzhelfer")
    # A PIN on its way, then known values in plain words: only the server's own
    # secrets (the tenant's and its commands') can find them.
    pending = site.admin(
        "mutation($g: ID!, $p: String!) { updateBroadcastAgent(groupId: $g, pin: $p) { id } }",
        g=group["id"],
        p=NEW_PIN,
    )["updateBroadcastAgent"]
    said = f"state {PBX_PASSWORD} {PIN} {NEW_PIN} {token}"
    command = site.admin('mutation { createGroup(name: "Spät") { id } }')["createGroup"]
    complete = (
        "mutation($id: ID!, $e: String!) { completeCommand(id: $id, ok: false, error: $e) { id } }"
    )
    agent(complete, id=command["id"], e=said)
    agent(complete, id=pending["id"], e=f"Set-IpPbxUser -Pin {NEW_PIN} failed: {said}")
    now = datetime.now(UTC).isoformat()
    agent(
        "mutation($i: BroadcastReportInput!) { reportBroadcast(input: $i) { lastSeq } }",
        i={
            "broadcastId": "b-secret",
            "groupPbxId": "9999",
            "mode": "ALARM",
            "startedAt": now,
            "memberCount": 1,
            "status": "COMPLETED",
            "finishedAt": now,
            "note": said,
            "events": [
                {
                    "seq": 1,
                    "memberPbxId": "1001",
                    "memberName": "Anna",
                    "attemptNo": 1,
                    "kind": "ended",
                    "at": now,
                    "outcome": "NO_ANSWER",
                    "detail": f'{{"password": "{PBX_PASSWORD}", "pin": "{PIN}"}}',
                }
            ],
        },
    )
    agent(
        "mutation($i: HealthInput!) { reportHealth(input: $i) { pollIntervalSeconds } }",
        i={
            "agentVersion": "0.test",
            "pbxReachable": True,
            "alarmServiceOk": True,
            "participantCount": 0,
            "reportedAt": now,
            "pbxAdapter": "sim",
            "dialer": "sip",
            "sipRegistration": {
                "state": "failed",
                "since": now,
                "lastError": {
                    "code": "refused",
                    "params": {"status": 403, "reason": f"Forbidden {PBX_PASSWORD}"},
                    "detail": f"Authorization: Bearer {token} pin {PIN}",
                    "at": now,
                },
            },
        },
    )
    agent(
        "mutation($i: NoticeInput!) { reportNotice(input: $i) { stored } }",
        i={
            "noticeId": f"n-{PIN}-{PBX_PASSWORD}",
            "kind": "wrongPins",
            "callerNumber": PIN,
            "count": 10,
            "at": now,
        },
    )
    stored = {where for where, _ in stored_texts(stack)}
    assert {"broadcast.note", "call_attempt.detail", "installation.sip_error_detail"} <= stored
    assert leaks(stack, site) == []
