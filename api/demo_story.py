"""What `rundruf demo` shows, done the way a customer would: through the API only.

The story talks GraphQL over HTTP to the running service; everything on the
PBX side happens through the real agent process and the SwyxWare simulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

SIM_HOST, SIM_ADMIN, SIM_PASSWORD = "swyx.local", "admin", "simulator"
ALARM_GROUP = "Brandschutzhelfer"


class DemoError(Exception):
    """Raised when a step of the demo story does not come out as it should."""


class Api:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = httpx.post(
            self.url + "/graphql",
            json={"query": query, "variables": variables},
            headers=headers,
            timeout=30,
        )
        body: dict[str, Any] = response.json()
        if body.get("errors"):
            raise DemoError(body["errors"][0]["message"])
        data: dict[str, Any] = body["data"]
        return data

    def login(self, email: str, password: str) -> Api:
        data = self(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
            e=email,
            p=password,
        )
        return Api(self.url, data["login"]["token"])


def wait(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"gave up waiting for {what} after {seconds:.0f} s")
        time.sleep(0.2)


def finish(api: Api, command_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        command: dict[str, Any] = api(
            "query($id: ID!) { command(id: $id) { type status error } }", id=command_id
        )["command"]
        return command if command["status"] not in ("PENDING", "DELIVERED") else None

    command: dict[str, Any] = wait(done, 30, f"command {command_id}")
    if command["status"] != "SUCCEEDED":
        raise DemoError(f"{command['type']}: {command['status']} {command['error'] or ''}")
    return command


GROUPS = "{ groups { id name members { name } broadcast { name extension pin } } }"


def run_story(
    url: str, admin: tuple[str, str], platform: tuple[str, str], say: Callable[[str], None]
) -> dict[str, Any]:
    """Connect, sign in to the PBX, convert the alarm group; returns that group."""
    customer = Api(url).login(*admin)
    ops = Api(url).login(*platform)
    wait(
        lambda: any(
            i["lastHeartbeatAt"]
            for i in ops("{ installations { lastHeartbeatAt } }")["installations"]
        ),
        30,
        "the agent's first heartbeat",
    )
    say("  agent connected (one outbound WebSocket), heartbeat received")
    # The shortest broadcast timeout: members who cannot answer are retried for 30 s.
    # The shortest poll interval: the agent reports every 5 s, so the watchdog notices
    # a silent agent within seconds when the demo stops it.
    customer(
        "mutation($h: String!, $u: String!, $p: String!) { updatePbxSettings(input: "
        "{host: $h, adminUser: $u, adminPassword: $p, broadcastTimeoutSeconds: 30, "
        "pollIntervalSeconds: 5}) { settings { host } } }",
        h=SIM_HOST,
        u=SIM_ADMIN,
        p=SIM_PASSWORD,
    )
    verify = customer("mutation { verifyPbxCredentials { command { id } } }")
    finish(customer, verify["verifyPbxCredentials"]["command"]["id"])
    groups = customer(GROUPS)["groups"]
    say(f"  Einstellungen → anmelden: the agent signed in to SwyxWare ({SIM_HOST})")
    say("  Gruppen (from the PBX, through the agent):")
    for group in groups:
        say(f"    {group['name']:<22} {len(group['members']):>3} Teilnehmer")
    alarm = next((g for g in groups if g["name"] == ALARM_GROUP), None)
    if alarm is None:
        raise DemoError(f"the simulated PBX has no group {ALARM_GROUP!r}")
    if alarm["broadcast"] is None:
        command = customer(
            "mutation($g: ID!) { enableBroadcast(groupId: $g) { id } }", g=alarm["id"]
        )
        finish(customer, command["enableBroadcast"]["id"])
    converted = next(g for g in customer(GROUPS)["groups"] if g["id"] == alarm["id"])
    agent = converted["broadcast"]
    say(f"  in Rundrufgruppe umwandeln: {ALARM_GROUP}")
    say(f"    Agent {agent['name']!r}  Rufnummer {agent['extension']}  PIN {agent['pin']}")
    return dict(converted)
