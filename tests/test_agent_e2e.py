"""The agent channel end to end: real `rundruf serve`, real `rundruf agent run`,
the SwyxWare simulator, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimControl
from tests.conftest import drop_database, fresh_database, need_postgres
from tests.processes import (
    RUNDRUF,
    Agent,
    Balancer,
    Client,
    Server,
    agent_env,
    clean_env,
    wait_until,
)

REDIS_URL = os.environ.get("RUNDRUF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "e2e password 123"
_names = itertools.count()


@dataclass
class Stack:
    env: dict[str, str]
    server: Server
    platform: Client
    logs: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    need_postgres()
    url = fresh_database(f"e2e{os.getpid()}")
    env = clean_env(
        RUNDRUF_DATABASE_URL=url,
        RUNDRUF_SECRET_KEY=Fernet.generate_key().decode(),
        RUNDRUF_REDIS_URL=REDIS_URL,
        RUNDRUF_COOKIE_SECURE="false",
    )
    logs = tmp_path_factory.mktemp("logs")
    subprocess.run([*RUNDRUF, "db", "upgrade"], env=env, check=True, timeout=120)
    subprocess.run(
        [
            *RUNDRUF,
            "admin",
            "create-platform-admin",
            "--email",
            "ops@e2e.example",
            "--password",
            PASSWORD,
        ],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    server = Server(env).start(logs)
    try:
        yield Stack(env, server, Client(server.url).login("ops@e2e.example", PASSWORD), logs)
    finally:
        server.stop()
        drop_database(url)


@dataclass
class Site:
    """A customer: tenant, admin, license, simulated SwyxWare and an enrolled agent."""

    tenant_id: str
    admin: Client
    sim: SimControl
    agent: Agent
    license_id: str


def new_site(
    stack: Stack,
    tmp_path: Path,
    server_url: str | None = None,
    seats: int = 50,
    **agent_settings: str,
) -> Site:
    n = next(_names)
    tenant = stack.platform(
        "mutation($n: String!) { createTenant(input: {name: $n}) { id } }", n=f"Kunde {n}"
    )["createTenant"]["id"]
    stack.platform(
        "mutation($t: ID!, $e: String!, $p: String!) { createUser(input: {tenantId: $t, "
        'email: $e, name: "IT", role: TENANT_ADMIN, password: $p}) { id } }',
        t=tenant,
        e=f"it{n}@kunde.example",
        p=PASSWORD,
    )
    issued = stack.platform(
        "mutation($t: ID!, $s: Int!, $v: DateTime!) { issueLicense(tenantId: $t, seats: $s, "
        "validUntil: $v) { key license { id } } }",
        t=tenant,
        s=seats,
        v=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
    )["issueLicense"]
    state = tmp_path / f"site{n}"
    sim = SimControl(state / "swyx-sim.json")
    state.mkdir(parents=True)
    sim.create(host="swyx.kunde.local", admin_user="admin", admin_password="swyx-pass")
    sim.seed_demo(n_members=5)
    agent = Agent(agent_env(state, **agent_settings), state)
    agent.enroll(server_url or stack.server.url, issued["key"])
    admin = Client(stack.server.url).login(f"it{n}@kunde.example", PASSWORD)
    return Site(tenant, admin, sim, agent.start(), issued["license"]["id"])


COMMAND = "query($id: ID!) { command(id: $id) { status error result } }"


def wait_command(client: Client, command_id: str, timeout: float = 20) -> dict:
    def done() -> dict | None:
        command = client(COMMAND, id=command_id)["command"]
        return command if command["status"] in ("SUCCEEDED", "FAILED", "EXPIRED") else None

    return wait_until(done, timeout, f"command {command_id}")


def verify(site: Site) -> None:
    site.admin(
        'mutation { updatePbxSettings(input: {host: "swyx.kunde.local", adminUser: "admin", '
        'adminPassword: "swyx-pass"}) { settings { host } } }'
    )
    command = site.admin("mutation { verifyPbxCredentials { command { id } } }")
    result = wait_command(site.admin, command["verifyPbxCredentials"]["command"]["id"])
    assert result["status"] == "SUCCEEDED", result


GROUPS = "{ groups { id name members { name } broadcast { name extension pin } } }"


def group_named(site: Site, name: str) -> dict:
    return next(g for g in site.admin(GROUPS)["groups"] if g["name"] == name)


def convert(site: Site, group: dict) -> dict:
    """Turns a group into a broadcast group through the agent; returns its agent data."""
    site.admin("mutation($g: ID!) { enableBroadcast(groupId: $g) { id } }", g=group["id"])
    return wait_until(lambda: group_named(site, group["name"])["broadcast"], 20, "broadcast")


def test_verifying_credentials_brings_the_pbx_directory_through_the_agent(stack, tmp_path):
    site = new_site(stack, tmp_path)
    try:
        assert site.admin(GROUPS)["groups"] == []
        verify(site)
        names = {g["name"] for g in site.admin(GROUPS)["groups"]}
        assert {"agenosRundrufGruppe", "Brandschutzhelfer", "Empfang"} <= names
        admin_group = group_named(site, "agenosRundrufGruppe")
        assert [m["name"] for m in admin_group["members"]] == ["Rundruf"]
        settings = site.admin("{ pbxSettings { verificationState verifiedAt } }")
        assert settings["pbxSettings"]["verificationState"] == "VERIFIED"
        # The service user "Rundruf" exists once, recognised by its description.
        users = [u for u in site.sim.snapshot().users if u.name == "Rundruf"]
        assert len(users) == 1
    finally:
        site.agent.stop()


def test_wrong_pbx_credentials_are_reported_in_plain_words(stack, tmp_path):
    site = new_site(stack, tmp_path)
    try:
        site.admin(
            'mutation { updatePbxSettings(input: {host: "swyx.kunde.local", '
            'adminUser: "admin", adminPassword: "falsch"}) { settings { host } } }'
        )
        command = site.admin("mutation { verifyPbxCredentials { command { id } } }")
        result = wait_command(site.admin, command["verifyPbxCredentials"]["command"]["id"])
        assert result["status"] == "FAILED"
        assert "wrong user name or password" in result["error"]
        settings = site.admin("{ pbxSettings { verificationState verificationError } }")
        assert settings["pbxSettings"]["verificationState"] == "FAILED"
    finally:
        site.agent.stop()


def test_converting_a_group_shows_the_agent_number_and_pin_from_the_pbx(stack, tmp_path):
    site = new_site(stack, tmp_path)
    try:
        verify(site)
        group = group_named(site, "Brandschutzhelfer")
        command = site.admin(
            "mutation($g: ID!) { enableBroadcast(groupId: $g) { id } }", g=group["id"]
        )["enableBroadcast"]
        assert wait_command(site.admin, command["id"])["status"] == "SUCCEEDED"
        broadcast = group_named(site, "Brandschutzhelfer")["broadcast"]
        assert broadcast["name"] == "Rundruf Brandschutzhelfer"
        agent_user = next(u for u in site.sim.snapshot().users if u.name == broadcast["name"])
        assert agent_user.callrouting_only
        assert agent_user.extension == broadcast["extension"]
        assert site.sim.pin_of(agent_user.id) == broadcast["pin"]
        # A new PIN and number go to the PBX and come back.
        command = site.admin(
            'mutation($g: ID!) { updateBroadcastAgent(groupId: $g, extension: "777", '
            'pin: "98765") { id } }',
            g=group["id"],
        )["updateBroadcastAgent"]
        assert wait_command(site.admin, command["id"])["status"] == "SUCCEEDED"
        assert group_named(site, "Brandschutzhelfer")["broadcast"]["extension"] == "777"
        assert site.sim.pin_of(agent_user.id) == "98765"
        # And back: the agent user is deleted on the PBX.
        command = site.admin(
            "mutation($g: ID!) { disableBroadcast(groupId: $g) { id } }", g=group["id"]
        )["disableBroadcast"]
        assert wait_command(site.admin, command["id"])["status"] == "SUCCEEDED"
        assert group_named(site, "Brandschutzhelfer")["broadcast"] is None
        assert not any(u.name == broadcast["name"] for u in site.sim.snapshot().users)
    finally:
        site.agent.stop()


def test_a_pbx_refusal_reaches_the_user_and_the_mirror_stays_true(stack, tmp_path):
    site = new_site(stack, tmp_path)
    try:
        verify(site)
        group = group_named(site, "Brandschutzhelfer")
        convert(site, group)
        # Someone took number 555 on the PBX directly, behind the website's back.
        site.sim.add_user("Hausmeister", "555")
        command = site.admin(
            'mutation($g: ID!) { updateBroadcastAgent(groupId: $g, extension: "555") { id } }',
            g=group["id"],
        )["updateBroadcastAgent"]
        result = wait_command(site.admin, command["id"])
        assert result["status"] == "FAILED"
        assert "555" in result["error"]
        users = {u["name"] for u in site.admin("{ pbxUsers { name } }")["pbxUsers"]}
        assert "Hausmeister" in users  # the failed command still refreshed the mirror
    finally:
        site.agent.stop()


def test_heartbeat_and_health_reach_the_monitoring(stack, tmp_path):
    site = new_site(stack, tmp_path)
    try:
        verify(site)
        group = group_named(site, "Brandschutzhelfer")
        convert(site, group)
        query = (
            "query($t: ID!) { installations(tenantId: $t) { lastHeartbeatAt participantCount "
            "pbxReachable alarmServiceOk agentVersion } }"
        )

        def reported() -> dict | None:
            rows = stack.platform(query, t=site.tenant_id)["installations"]
            row = rows[0] if rows else None
            return row if row and row["participantCount"] == len(group["members"]) else None

        # Health goes out every poll interval; a settings change pushes a shorter one.
        site.admin(
            "mutation { updatePbxSettings(input: {pollIntervalSeconds: 5}) { command { id } } }"
        )
        row = wait_until(reported, 30, "a heartbeat with the participant count")
        assert row["pbxReachable"] is True and row["alarmServiceOk"] is True
        site.sim.set_fault(unreachable=True)
        wait_until(
            lambda: (
                stack.platform(query, t=site.tenant_id)["installations"][0]["pbxReachable"] is False
            ),
            30,
            "PBX reported unreachable",
        )
    finally:
        site.agent.stop()


def test_a_killed_agent_completes_the_command_exactly_once_after_restart(stack, tmp_path):
    site = new_site(stack, tmp_path)
    try:
        verify(site)
        site.sim.set_fault(delay_seconds=3)
        command = site.admin('mutation { createGroup(name: "Nachtschicht") { id } }')
        command_id = command["createGroup"]["id"]
        wait_until(
            lambda: site.admin(COMMAND, id=command_id)["command"]["status"] == "DELIVERED",
            20,
            "delivery",
        )
        site.agent.kill()
        site.sim.set_fault(delay_seconds=0)
        site.agent.start()
        assert wait_command(site.admin, command_id, 30)["status"] == "SUCCEEDED"
        groups = [g for g in site.sim.snapshot().groups if g.name == "Nachtschicht"]
        assert len(groups) == 1
        assert [g["name"] for g in site.admin(GROUPS)["groups"]].count("Nachtschicht") == 1
    finally:
        site.agent.stop()


def test_a_revoked_license_disconnects_the_agent_within_seconds(stack, tmp_path):
    site = new_site(stack, tmp_path)
    try:
        verify(site)
        stack.platform("mutation($id: ID!) { revokeLicense(id: $id) { id } }", id=site.license_id)
        wait_until(lambda: site.agent.process.poll() is not None, 15, "the agent to stop")
        assert site.agent.process.returncode == 3
        assert "enroll again" in site.agent.log.read_text()
    finally:
        site.agent.stop()


def test_an_agent_never_receives_another_tenants_commands(stack, tmp_path):
    a, b = new_site(stack, tmp_path), new_site(stack, tmp_path)
    try:
        verify(a)
        verify(b)
        command = a.admin('mutation { createGroup(name: "Nur A") { id } }')["createGroup"]
        assert wait_command(a.admin, command["id"])["status"] == "SUCCEEDED"
        assert any(g.name == "Nur A" for g in a.sim.snapshot().groups)
        assert not any(g.name == "Nur A" for g in b.sim.snapshot().groups)
        assert command["id"] not in b.agent.log.read_text()
    finally:
        a.agent.stop()
        b.agent.stop()


def test_user_states_from_the_pbx_reach_the_mirror(stack, tmp_path):
    site = new_site(stack, tmp_path)
    try:
        verify(site)
        member = site.sim.snapshot().users[0]
        site.sim.set_state(member.id, UserState.DO_NOT_DISTURB)
        command = site.admin('mutation { createGroup(name: "Sync") { id } }')["createGroup"]
        wait_command(site.admin, command["id"])
        users = {
            u["name"]: u["state"] for u in site.admin("{ pbxUsers { name state } }")["pbxUsers"]
        }
        assert users[member.name] == "DO_NOT_DISTURB"
    finally:
        site.agent.stop()


def _agent_server(balancer: Balancer, servers: list[Server]) -> Server:
    """The server the agent's WebSocket sits on, as the balancer routed it."""

    def connected_to() -> Server | None:
        ports = balancer.websocket_backends()
        return next((s for s in servers if ports and s.port == ports[-1]), None)

    return wait_until(connected_to, 20, "the agent's connection")


async def _watch(url: str, token: str, ready: asyncio.Event, seen: list[dict]) -> None:
    """A browser's subscription to command updates, until one succeeded."""
    ws_url = url.replace("http://", "ws://") + "/graphql"
    async with connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription { commandUpdated { id type status } }"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        ready.set()
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "next":
                seen.append(message["payload"]["data"]["commandUpdated"])
                if seen[-1]["status"] == "SUCCEEDED":
                    return


def test_two_servers_share_commands_and_an_agent_survives_losing_one(stack, tmp_path):
    second = Server(stack.env).start(stack.logs)
    balancer = Balancer([second.port, stack.server.port])
    site = new_site(stack, tmp_path, server_url=balancer.url)
    try:
        verify(site)
        on_agent = _agent_server(balancer, [stack.server, second])
        other = second if on_agent is stack.server else stack.server
        # A mutation on the other process reaches the agent on this one, and a
        # browser subscribed on the agent's process sees the outcome.
        seen: list[dict] = []

        async def scenario() -> None:
            ready = asyncio.Event()
            watcher = asyncio.create_task(_watch(on_agent.url, site.admin.token, ready, seen))
            await asyncio.wait_for(ready.wait(), 10)
            on_other = Client(other.url, site.admin.token)
            await asyncio.to_thread(on_other, 'mutation { createGroup(name: "Über A") { id } }')
            await asyncio.wait_for(watcher, 20)

        asyncio.run(scenario())
        assert seen[-1]["status"] == "SUCCEEDED"
        assert seen[-1]["type"] == "createGroup"
        assert any(g.name == "Über A" for g in site.sim.snapshot().groups)
        on_agent.kill()  # the agent's server dies; the balancer sends it to the other one
        on_other = Client(other.url, site.admin.token)
        command = on_other('mutation { createGroup(name: "Nach dem Ausfall") { id } }')
        assert wait_command(on_other, command["createGroup"]["id"], 30)["status"] == "SUCCEEDED"
        assert any(g.name == "Nach dem Ausfall" for g in site.sim.snapshot().groups)
    finally:
        site.agent.stop()
        balancer.close()
        second.stop()
        if stack.server.process is None or stack.server.process.poll() is not None:
            stack.server.start(stack.logs)  # the module's server was the one killed


def test_a_frozen_server_is_noticed_and_the_agent_moves_on(stack, tmp_path):
    second = Server(stack.env).start(stack.logs)
    balancer = Balancer([second.port, stack.server.port])
    site = new_site(stack, tmp_path, server_url=balancer.url)
    frozen: Server | None = None
    try:
        verify(site)
        frozen = _agent_server(balancer, [stack.server, second])
        other = second if frozen is stack.server else stack.server
        # SIGSTOP: the TCP connection stays open but nothing answers, as with a
        # dead network path. Pings go unanswered and the agent must notice.
        frozen.process.send_signal(signal.SIGSTOP)
        on_other = Client(other.url, site.admin.token)
        started = time.monotonic()
        command = on_other('mutation { createGroup(name: "Trotz Ausfall") { id } }')
        assert wait_command(on_other, command["createGroup"]["id"], 60)["status"] == "SUCCEEDED"
        took = time.monotonic() - started
        print(f"\nfrozen server noticed, command completed after {took:.1f} s")
    finally:
        if frozen is not None:
            frozen.process.send_signal(signal.SIGCONT)
        site.agent.stop()
        balancer.close()
        second.stop()


def test_an_announcement_reaches_the_agents_cache_verified_by_checksum(stack, tmp_path):
    import hashlib

    import httpx

    from tests.world import wav_bytes

    site = new_site(stack, tmp_path)
    try:
        verify(site)
        group = group_named(site, "Brandschutzhelfer")
        convert(site, group)
        audio = wav_bytes(seconds=1.0)
        upload = httpx.post(
            stack.server.url + "/api/uploads",
            content=audio,
            headers={"Authorization": f"Bearer {site.admin.token}", "Content-Type": "audio/wav"},
        )
        assert upload.status_code == 201, upload.text
        change = site.admin(
            "mutation($g: ID!, $u: ID!) { setAnnouncement(groupId: $g, kind: ALARM, "
            "uploadId: $u) { command { id } } }",
            g=group["id"],
            u=upload.json()["id"],
        )["setAnnouncement"]
        assert wait_command(site.admin, change["command"]["id"])["status"] == "SUCCEEDED"
        digest = hashlib.sha256(audio).hexdigest()
        cached = site.agent.state / "data" / "audio" / f"{digest}.wav"
        assert cached.read_bytes() == audio
    finally:
        site.agent.stop()


def test_the_job_service_on_the_pbx_host_shows_in_the_monitoring(stack, tmp_path):
    from tests.jobservice.support import AGENT
    from tests.jobservice.test_process import JobService

    (tmp_path / "jobs").mkdir()
    jobs = JobService(tmp_path / "jobs").start()
    site = new_site(
        stack,
        tmp_path,
        RUNDRUF_AGENT_JOBSERVICE_URL=jobs.url,
        RUNDRUF_AGENT_JOBSERVICE_TOKEN=AGENT,
    )
    query = "query($t: ID!) { installations(tenantId: $t) { jobserviceReachable } }"

    def reachable() -> bool | None:
        rows = stack.platform(query, t=site.tenant_id)["installations"]
        return rows[0]["jobserviceReachable"] if rows else None

    try:
        site.admin(
            "mutation { updatePbxSettings(input: {pollIntervalSeconds: 5}) { command { id } } }"
        )
        wait_until(lambda: reachable() is True, 30, "job service reported reachable")
        jobs.kill()
        wait_until(lambda: reachable() is False, 30, "job service reported unreachable")
    finally:
        site.agent.stop()
        jobs.kill()
