"""No secret in any stored text (issue 14, point 5), end to end: real `rundruf serve`,
real `rundruf agent run` on the SwyxWare simulator, PostgreSQL and Redis.

The secrets are planted where failures see them (the simulator's state, a command's
secrets, the texts an agent reports); afterwards every text, JSON and number column
of every table is read and searched for each of them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

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


def forms(secret: str) -> set[str]:
    """A secret as a stored text may hold it: as it is, as JSON (once, twice) and a URL
    write it, in any case."""
    once = json.dumps(secret)[1:-1]
    return {
        f.casefold()
        for f in (secret, once, json.dumps(once)[1:-1], quote(secret, safe=""), quote_plus(secret))
    }


def found_in(
    texts: Iterable[tuple[str, str]], planted: dict[str, str]
) -> list[tuple[str, str, str]]:
    wanted = {name: forms(secret) for name, secret in planted.items()}
    return [
        (where, name, text[:300])
        for where, text in texts
        for name, variants in wanted.items()
        if any(v in text.casefold() for v in variants)
    ]


def leaks(stack: Stack, site: Site) -> list[tuple[str, str, str]]:
    return found_in(stored_texts(stack), secrets(stack, site))


def ledger_texts(site: Site) -> Iterator[tuple[str, str]]:
    """Every text in the agent's ledger: what the agent itself sent, before any scrubbing
    on the server (a server scrubbing well must not hide an agent that leaks)."""
    path = site.agent.state / "data" / "ledger.db"  # RUNDRUF_AGENT_STATE_DIR
    assert path.exists()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, str | bytes):
                        text = value.decode(errors="replace") if isinstance(value, bytes) else value
                        yield f"ledger.{table}", text


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
    # The agent's own words, unscrubbed: the original leak was here.
    sent = list(ledger_texts(site))
    assert any("is damaged: UnicodeDecodeError" in text for _, text in sent), sent
    assert found_in(sent, secrets(stack, site)) == []


def test_the_server_stores_no_secret_an_agent_reports(stack, site):
    site.agent.stop()  # the test speaks as the agent, with its token
    token = token_of(site)
    agent = Client(site.admin.url.removesuffix("/graphql"), token)
    group = group_named(site, "Brandschutzhelfer")
    # A PIN on its way, then known values in plain words: only the server's own
    # secrets (the tenant's and its commands') can find them. A PIN is found by its
    # context (a bare number that equals a PIN is a number: docs/decisions/
    # secrets-in-errors.md).
    pending = site.admin(
        "mutation($g: ID!, $p: String!) { updateBroadcastAgent(groupId: $g, pin: $p) { id } }",
        g=group["id"],
        p=NEW_PIN,
    )["updateBroadcastAgent"]
    said = f"state {PBX_PASSWORD} pin {PIN}, PIN: {NEW_PIN} {token}"
    command = site.admin('mutation { createGroup(name: "Spät") { id } }')["createGroup"]
    complete = (
        "mutation($id: ID!, $e: String!, $r: JSON) {"
        " completeCommand(id: $id, ok: false, error: $e, result: $r) { id } }"
    )
    result = {"output": [{"message": said}], "agentPin": PIN, "raw": json.dumps({"pin": PIN})}
    agent(complete, id=command["id"], e=said, r=result)
    agent(complete, id=pending["id"], e=f"Set-IpPbxUser -Pin {NEW_PIN} failed: {said}", r=None)
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
                    "params": {
                        "status": 403,
                        "reason": f"Forbidden {PBX_PASSWORD}",
                        "pin": int(PIN),
                    },
                    "detail": f"Authorization: Bearer {token} pin {PIN}",
                    "at": now,
                },
            },
        },
    )
    # A notice holds identifiers and numbers, no free text: stored as it came.
    agent(
        "mutation($i: NoticeInput!) { reportNotice(input: $i) { stored } }",
        i={
            "noticeId": "n-1",
            "kind": "wrongPins",
            "callerNumber": "0301234",
            "count": 10,
            "at": now,
        },
    )
    stored = {where for where, _ in stored_texts(stack)}
    assert {"broadcast.note", "call_attempt.detail", "installation.sip_error_detail"} <= stored
    assert "command.result" in stored
    assert leaks(stack, site) == []
