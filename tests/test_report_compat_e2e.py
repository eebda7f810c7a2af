"""An agent newer than its central service (issue 15, review 7 point 4): the reporter
against a real `rundruf serve` that refuses the kind "held" as the services before the
hold steps did (tests/old_central.py), on PostgreSQL.

Before: the report of a broadcast in which one member held the call was refused as a
whole, again and again; the history showed it running with no confirmation. Now the
agent sends it again without the kind, and leaves the kind out of that service's
reports for an hour (docs/decisions/report-compatibility.md).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import COMPLETED, Broadcast, Member
from edge_agent.broadcast.report_compat import WithheldKinds
from edge_agent.broadcast.reporter import Reporter
from edge_agent.config import Enrolment
from edge_agent.server import Server as AgentServer
from tests.conftest import drop_database, fresh_database, need_postgres
from tests.processes import RUNDRUF, Client, Server, clean_env, wait_until

PASSWORD = "compat password 123"
MEMBERS = 20
HISTORY = """query { broadcasts(first: 5) { nodes { status attempts { memberName heldAt
  confirmedAt outcome } } } }"""


@dataclass
class OldServer(Server):
    """`rundruf serve` refusing kinds it does not know, as it did before report_kinds.py."""

    def start(self, log_dir: Path) -> OldServer:
        self.log = log_dir / f"old-server-{self.port}.log"
        env = dict(self.env, RUNDRUF_PORT=str(self.port))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [RUNDRUF[0], "-m", "tests.old_central", "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, 30, f"server on {self.port}")
        return self


@dataclass
class Site:
    server: OldServer
    agent_token: str
    viewer: Client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    need_postgres()
    url = fresh_database("compat")
    env = clean_env(
        RUNDRUF_DATABASE_URL=url,
        RUNDRUF_SECRET_KEY=Fernet.generate_key().decode(),
        RUNDRUF_COOKIE_SECURE="false",
    )
    subprocess.run([*RUNDRUF, "db", "upgrade"], env=env, check=True, timeout=120)
    admin = ["admin", "create-platform-admin", "--email", "ops@compat.example"]
    subprocess.run(
        [*RUNDRUF, *admin, "--password", PASSWORD], env=env, check=True, capture_output=True
    )
    server = OldServer(env).start(tmp_path_factory.mktemp("logs"))
    try:
        ops = Client(server.url).login("ops@compat.example", PASSWORD)
        tenant = ops('mutation { createTenant(input: {name: "Alt GmbH"}) { id } }')
        tenant_id = tenant["createTenant"]["id"]
        ops(
            "mutation($t: ID!, $p: String!) { createUser(input: {tenantId: $t, email: "
            '"it@alt.example", name: "IT", role: TENANT_VIEWER, password: $p}) { id } }',
            t=tenant_id,
            p=PASSWORD,
        )
        key = ops(
            "mutation($t: ID!, $v: DateTime!) { issueLicense(tenantId: $t, seats: 5, "
            "validUntil: $v) { key } }",
            t=tenant_id,
            v=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
        )["issueLicense"]["key"]
        token = Client(server.url)(
            "mutation($k: String!) { registerInstallation(licenseKey: $k, hostname: "
            '"swyx.alt.local", agentVersion: "0.2.0") { token } }',
            k=key,
        )["registerInstallation"]["token"]
        viewer = Client(server.url).login("it@alt.example", PASSWORD)
        yield Site(server, token, viewer)
    finally:
        server.stop()
        drop_database(url)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Agent:
    journal: Journal
    server: AgentServer
    reporter: Reporter
    reports: list[dict[str, Any]]  # what each report carried, refused or not
    clock: Clock


@pytest.fixture
async def agent(site: Site, tmp_path: Path) -> AsyncIterator[Agent]:
    journal = Journal(tmp_path / "journal.sqlite")
    server = AgentServer(Enrolment(site.server.url, "i", site.agent_token), verify_tls=False)
    reports: list[dict[str, Any]] = []

    async def seen(request: httpx.Request) -> None:
        reports.append(json.loads(request.content)["variables"]["input"])

    server._client.event_hooks["request"].append(seen)
    clock = Clock()
    reporter = Reporter(journal, server, None, backoff_cap_s=1)
    reporter.withheld = WithheldKinds(clock=clock)
    try:
        yield Agent(journal, server, reporter, reports, clock)
    finally:
        await server.aclose()
        await journal.close()


async def held_broadcast(journal: Journal, broadcast_id: str) -> None:
    """A finished alarm of MEMBERS members, each confirmed; the first held the call and
    came back before confirming (as the SIP dialer journals it)."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    members = [Member(i, f"u{i}", f"Mitglied {i}", f"2{i:02}") for i in range(MEMBERS)]
    b = Broadcast(broadcast_id, "command", broadcast_id, "g1", 2, now, now + timedelta(minutes=5))
    await journal.create(b, members)
    for i in range(MEMBERS):
        steps = ["started", "ringing", "answered"]
        steps += ["held", "resumed"] if i == 0 else []
        steps += ["confirmed", "ended"]
        at = now + timedelta(seconds=i)
        await journal.record_many(
            broadcast_id,
            [
                (
                    f"u{i}",
                    1,
                    kind,
                    at + timedelta(seconds=n),
                    "confirmed" if kind == "ended" else None,
                    None,
                )
                for n, kind in enumerate(steps)
            ],
        )
    await journal.finish(broadcast_id, COMPLETED, now + timedelta(minutes=1), "")


def shown(site: Site) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = site.viewer(HISTORY)["broadcasts"]["nodes"]
    return nodes


def kinds(report: dict[str, Any]) -> set[str]:
    return {e["kind"] for e in report["events"]}


async def test_a_service_that_refuses_held_gets_the_rest_of_the_history(
    site: Site, agent: Agent
) -> None:
    await held_broadcast(agent.journal, "b-old-1")

    left = await agent.reporter.settle()

    assert left is False  # everything delivered, nothing waits (before: refused, retried)
    [broadcast] = shown(site)
    assert broadcast["status"] == "COMPLETED"
    confirmed = [a for a in broadcast["attempts"] if a["outcome"] == "CONFIRMED"]
    assert len(confirmed) == MEMBERS and all(a["confirmedAt"] for a in confirmed)
    assert all(a["heldAt"] is None for a in broadcast["attempts"])  # it never knew them
    # Refused once for "held", once for "resumed", then sent without both.
    assert [kinds(r) & {"held", "resumed"} for r in agent.reports] == [
        {"held", "resumed"},
        {"resumed"},
        set(),
    ]
    assert (await agent.journal.get("b-old-1")).final_acked

    # The next broadcast goes without them at once: one report, no refusal.
    await held_broadcast(agent.journal, "b-old-2")
    agent.reports.clear()
    assert await agent.reporter.settle() is False
    assert len(agent.reports) == 1 and not kinds(agent.reports[0]) & {"held", "resumed"}

    # An hour later the service may have been updated: the kinds are offered again.
    agent.clock.now += 3600
    await held_broadcast(agent.journal, "b-old-3")
    agent.reports.clear()
    assert await agent.reporter.settle() is False
    assert len(agent.reports) == 3 and kinds(agent.reports[0]) >= {"held", "resumed"}
