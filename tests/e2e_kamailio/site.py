"""A customer whose PBX is Kamailio: the real central service (`rundruf serve`, PostgreSQL,
test_agent_e2e's `stack`), a tenant with a license, the real `rundruf agent run` with the
SIP dialer registered at Kamailio as "Rundruf" and answering trigger calls itself, and
the simulated SwyxWare as the directory (users, groups, the agent numbers it hands out).

Numbers: the members are extensions 2001 .. 2020 (the Kamailio fixture's MEMBERS), in
the group "Alarmgruppe" (state "not available" in the simulator: a test broadcast asks
Kamailio for their dialog state, RFC 4235); callers are 1000 .. 1009; the simulator
hands out numbers from 7000 (the service user "Rundruf" and the group's agent number),
and Kamailio routes every number from 7000 to 7019 to the "Rundruf" registration with
`Diversion`, as a PBX routes a number block to a trunk: the agent number need not be
known before Kamailio starts.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimControl
from tests.processes import Agent, Client, agent_env, wait_until
from tests.sip.kamailio import AGENT_USER, MEMBERS, Kamailio
from tests.test_agent_e2e import PASSWORD, Site, Stack, convert, group_named, verify

GROUP = "Alarmgruppe"
CALLERS = tuple(str(1000 + n) for n in range(10))
AGENT_BLOCK = tuple(str(7000 + n) for n in range(20))
_names = itertools.count()

HISTORY = """query($id: ID!) { broadcast(id: $id) { id mode status note memberCount finishedAt
  triggerCallerNumber triggerCallerName triggerSource
  attempts { memberName memberExtension attemptNo startedAt ringingAt answeredAt confirmedAt
             endedAt outcome detail } } }"""
LATEST = """{ broadcasts(first: 50) { nodes { id startedAt finishedAt } } }"""


def users() -> dict[str, str]:
    """Kamailio's user table: members, callers and the agent's "Rundruf"."""
    return {name: secrets.token_urlsafe(9) for name in (*MEMBERS, *CALLERS, AGENT_USER)}


def kamailio(folder: Path) -> Kamailio:
    """Kamailio (not started) with those users, the agent number block to "Rundruf"."""
    return Kamailio(folder, users=users(), agent_numbers=dict.fromkeys(AGENT_BLOCK, AGENT_USER))


def sip_settings(pbx: Kamailio) -> dict[str, str]:
    """The agent's SIP: registered at Kamailio as "Rundruf", answering trigger calls."""
    return {
        **pbx.agent_env(),
        "RUNDRUF_AGENT_SIP_ANSWER_CALLS": "true",
        "RUNDRUF_AGENT_RETRY_PAUSE_SECONDS": "0.5",
        "RUNDRUF_AGENT_RING_TIMEOUT_SECONDS": "20",
    }


@dataclass
class KamailioSite:
    site: Site
    pbx: Kamailio
    agent_number: str
    pin: str
    members: dict[str, str]  # extension -> member name
    database_url: str

    def history(self, broadcast_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.site.admin(HISTORY, id=broadcast_id)["broadcast"]
        return found

    def broadcast_ids(self) -> list[str]:
        return [n["id"] for n in self.site.admin(LATEST)["broadcasts"]["nodes"]]

    def finished_after(self, before: list[str], timeout: float = 60) -> dict[str, Any]:
        """The broadcast that was not in `before`, once it finished."""

        def done() -> dict[str, Any] | None:
            fresh = [i for i in self.broadcast_ids() if i not in before]
            if not fresh:
                return None
            broadcast = self.history(fresh[0])
            return broadcast if broadcast["finishedAt"] else None

        found: dict[str, Any] = wait_until(done, timeout, "the broadcast to finish")
        return found

    def mails(self, subject_like: str) -> list[tuple[str, str]]:
        """(to, subject) of the tenant's mails in the outbox whose subject is like this."""
        url = self.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as db:
            rows = db.execute(
                "SELECT to_address, subject FROM email WHERE tenant_id = %s AND subject LIKE %s",
                (self.site.tenant_id, subject_like),
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def stop(self) -> None:
        self.site.agent.stop()


def _tenant(stack: Stack, n: int) -> tuple[str, str, str]:
    """A tenant with an admin and a license: (tenant id, license id, license key)."""
    tenant = stack.platform(
        "mutation($n: String!) { createTenant(input: {name: $n}) { id } }", n=f"Kamailio {n}"
    )["createTenant"]["id"]
    stack.platform(
        "mutation($t: ID!, $e: String!, $p: String!) { createUser(input: {tenantId: $t, "
        'email: $e, name: "IT", role: TENANT_ADMIN, password: $p}) { id } }',
        t=tenant,
        e=f"it-k{n}@kunde.example",
        p=PASSWORD,
    )
    issued = stack.platform(
        "mutation($t: ID!, $s: Int!, $v: DateTime!) { issueLicense(tenantId: $t, seats: $s, "
        "validUntil: $v) { key license { id } } }",
        t=tenant,
        s=50,
        v=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
    )["issueLicense"]
    return tenant, issued["license"]["id"], issued["key"]


def kamailio_site(stack: Stack, tmp_path: Path, pbx: Kamailio, **settings: str) -> KamailioSite:
    """The customer above, its agent registered at `pbx`, the group converted."""
    n = next(_names)
    tenant, license_id, key = _tenant(stack, n)
    state = tmp_path / f"site-k{n}"
    state.mkdir(parents=True)
    sim = SimControl(state / "swyx-sim.json")
    sim.create(
        host="swyx.kunde.local",
        admin_user="admin",
        admin_password="swyx-pass",
        first_extension=int(AGENT_BLOCK[0]),
        last_extension=int(AGENT_BLOCK[-1]),
    )
    members = {ext: f"Mitglied {ext}" for ext in MEMBERS}
    ids = [sim.add_user(name, ext, UserState.UNAVAILABLE) for ext, name in members.items()]
    sim.add_group(GROUP, ids)
    agent = Agent(agent_env(state, **sip_settings(pbx), **settings), state)
    agent.enroll(stack.server.url, key)
    admin = Client(stack.server.url).login(f"it-k{n}@kunde.example", PASSWORD)
    site = Site(tenant, admin, sim, agent.start(), license_id)
    try:
        verify(site)
        broadcast = convert(site, group_named(site, GROUP))
        wait_until(lambda: pbx.bindings(AGENT_USER), 30, "the agent's registration")
    except BaseException:
        site.agent.stop()
        raise
    number, pin = str(broadcast["extension"]), str(broadcast["pin"])
    assert number in AGENT_BLOCK, number
    return KamailioSite(site, pbx, number, pin, members, stack.env["RUNDRUF_DATABASE_URL"])
