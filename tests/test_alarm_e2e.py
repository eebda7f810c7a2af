"""The alarm path end to end: a job posted as the routing script posts it, the real job
service, the real agent with the simulated SwyxWare and dialer, the real central service
on PostgreSQL and Redis; each process killed or stopped where the issue asks."""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from edge_agent.dialer.sim import Behaviour, SimDialerControl
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim_trigger import Outcome, TriggerResult, place_trigger_call
from tests import test_agent_e2e as channel_e2e
from tests.jobservice.support import AGENT, ROUTING, bearer, job_body
from tests.jobservice.test_process import JobService
from tests.processes import wait_until
from tests.test_agent_e2e import Site, Stack, convert, group_named, new_site, verify

# The channel tests' fixture: this module gets a server of its own.
stack = channel_e2e.stack

GROUP = "Brandschutzhelfer"
HISTORY = """{ broadcasts(first: 5) { nodes { id mode status note memberCount quorum quorumReachedAt
  triggerCallerNumber triggerCallerName finishedAt
  attempts { memberName memberExtension attemptNo startedAt ringingAt answeredAt confirmedAt
             endedAt outcome detail } } } }"""


@dataclass
class AlarmSite:
    site: Site
    jobs: JobService
    extension: str  # the group's agent number
    pin: str
    members: list[str]  # member names
    script: SimDialerControl

    def call(self, digits: list[str], caller: str = "100", **fields: Any) -> TriggerResult:
        """A trigger call on the simulated PBX, whose call routing posts to the job service."""
        return asyncio.run(
            place_trigger_call(
                self.site.sim.state_path,
                self.jobs.url,
                ROUTING,
                self.extension,
                digits,
                caller_number=caller,
                caller_name="Pforte",
                time_scale=0.01,
                **fields,
            )
        )

    def post(self, key: str, **fields: Any) -> str:
        body = job_body(key, agentNumber=self.extension, memberStates=None, **fields)
        response = httpx.post(self.jobs.url + "/jobs", json=body, headers=bearer(ROUTING))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def history(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = self.site.admin(HISTORY)["broadcasts"]["nodes"]
        return nodes

    def finished(self, timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            nodes = [b for b in self.history() if b["finishedAt"] is not None]
            return nodes[0] if nodes else None

        return wait_until(done, timeout, "the broadcast to finish in the history")

    def pending_jobs(self) -> list[dict[str, Any]]:
        response = httpx.get(self.jobs.url + "/jobs?wait=0", headers=bearer(AGENT))
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs


@pytest.fixture
def alarm_site(stack: Stack, tmp_path: Path) -> Iterator[AlarmSite]:
    (tmp_path / "jobs").mkdir()
    jobs = JobService(tmp_path / "jobs").start()
    site = new_site(
        stack,
        tmp_path,
        RUNDRUF_AGENT_JOBSERVICE_URL=jobs.url,
        RUNDRUF_AGENT_JOBSERVICE_TOKEN=AGENT,
        RUNDRUF_AGENT_SIM_TIME_SCALE="0.05",
        RUNDRUF_AGENT_RETRY_PAUSE_SECONDS="0.5",
        # Long enough for the slow answers scripted below (simulated seconds).
        RUNDRUF_AGENT_RING_TIMEOUT_SECONDS="300",
    )
    try:
        verify(site)
        group = group_named(site, GROUP)
        agent = convert(site, group)
        members = [m["name"] for m in group["members"]]
        for name in members:  # everyone reachable: the broadcast ends when all confirmed
            site.sim.set_state(name, UserState.LOGGED_ON)
        script = SimDialerControl(site.sim.state_path)
        yield AlarmSite(site, jobs, agent["extension"], agent["pin"], members, script)
    finally:
        site.agent.stop()
        jobs.kill()


def extensions(alarm: AlarmSite) -> list[str]:
    users = {u.name: u.extension for u in alarm.site.sim.snapshot().users}
    return [str(users[name]) for name in alarm.members]


def by_member(broadcast: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    attempts: dict[str, list[dict[str, Any]]] = {}
    for a in sorted(broadcast["attempts"], key=lambda a: (a["memberName"], a["attemptNo"])):
        attempts.setdefault(a["memberName"], []).append(a)
    return attempts


def test_a_triggered_alarm_calls_every_member_and_the_history_shows_each_call(
    alarm_site: AlarmSite,
) -> None:
    alarm_site.post("call-1")
    broadcast = alarm_site.finished()
    assert (broadcast["mode"], broadcast["status"]) == ("ALARM", "COMPLETED")
    assert (broadcast["triggerCallerNumber"], broadcast["triggerCallerName"]) == (
        "0711 4711",
        "Pförtner",
    )
    assert broadcast["memberCount"] == len(alarm_site.members) == 5
    attempts = by_member(broadcast)
    assert sorted(attempts) == sorted(alarm_site.members)
    for name, calls in attempts.items():
        assert [(c["attemptNo"], c["outcome"]) for c in calls] == [(1, "CONFIRMED")], name
        call = calls[0]
        assert call["startedAt"] <= call["ringingAt"] <= call["answeredAt"] <= call["endedAt"]
        assert call["confirmedAt"] is not None
    assert "5 of 5 called members confirmed" in broadcast["note"]
    # The job leaves the job service once the server has the final report.
    wait_until(lambda: alarm_site.pending_jobs() == [], 20, "the job to be deleted")


def test_the_history_is_complete_after_the_server_was_down_during_the_broadcast(
    alarm_site: AlarmSite, stack: Stack
) -> None:
    for extension in extensions(alarm_site):  # 3 s of ringing each at this time scale
        alarm_site.script.script(extension, Behaviour.CONFIRM, after_s=60)
    alarm_site.post("call-2")
    wait_until(lambda: alarm_site.history(), 20, "the broadcast to appear")
    stack.server.stop()
    try:
        # The calls go on without the server: the agent works from its cache.
        wait_until(
            lambda: alarm_site.site.agent.log.read_text().count("ended confirmed") == 5,
            30,
            "every call confirmed",
        )
    finally:
        stack.server.start(stack.logs)
    broadcast = alarm_site.finished()
    assert broadcast["status"] == "COMPLETED"
    attempts = by_member(broadcast)
    assert sorted(attempts) == sorted(alarm_site.members)
    for name, calls in attempts.items():
        assert [(c["attemptNo"], c["outcome"]) for c in calls] == [(1, "CONFIRMED")], name
        assert calls[0]["ringingAt"] is not None and calls[0]["answeredAt"] is not None


def test_an_agent_killed_mid_broadcast_goes_on_and_calls_nobody_twice_per_attempt(
    alarm_site: AlarmSite,
) -> None:
    for extension in extensions(alarm_site):
        alarm_site.script.script(extension, Behaviour.CONFIRM, after_s=200)  # 10 s ringing

    def all_ringing() -> bool:
        nodes = alarm_site.history()
        return bool(nodes) and sum(1 for a in nodes[0]["attempts"] if a["ringingAt"]) == 5

    alarm_site.post("call-3")
    wait_until(all_ringing, 30, "every member's phone to ring")
    alarm_site.site.agent.kill()
    alarm_site.script.clear()  # they answer the next call at once
    alarm_site.site.agent.start()
    broadcast = alarm_site.finished()
    attempts = by_member(broadcast)
    assert sorted(attempts) == sorted(alarm_site.members)
    for name, calls in attempts.items():
        assert [(c["attemptNo"], c["outcome"]) for c in calls] == [
            (1, "FAILED"),
            (2, "CONFIRMED"),
        ], name
        assert "interrupted" in calls[0]["detail"]
    wait_until(lambda: alarm_site.pending_jobs() == [], 20, "the job to be deleted")


def test_a_job_survives_the_job_service_being_killed_right_after_accepting_it(
    alarm_site: AlarmSite,
) -> None:
    alarm_site.site.agent.stop()  # nobody takes the job before the kill
    job_id = alarm_site.post("call-4")
    alarm_site.jobs.kill()
    alarm_site.jobs.start()
    assert [j["id"] for j in alarm_site.pending_jobs()] == [job_id]
    alarm_site.site.agent.start()
    broadcast = alarm_site.finished()
    outcomes = Counter(a["outcome"] for a in broadcast["attempts"])
    assert outcomes == {"CONFIRMED": 5}
    wait_until(lambda: alarm_site.pending_jobs() == [], 20, "the job to be deleted")


def test_a_test_call_with_the_pin_calls_only_members_who_are_free(alarm_site: AlarmSite) -> None:
    on_the_phone = alarm_site.members[:2]
    for name in on_the_phone:
        alarm_site.site.sim.set_state(name, UserState.SPEAKING_EXTERNAL)
    result = alarm_site.call([alarm_site.pin, "1", "1"])
    assert result.outcome is Outcome.POSTED
    broadcast = alarm_site.finished()
    assert broadcast["mode"] == "TEST"
    outcomes = {name: [a["outcome"] for a in calls] for name, calls in by_member(broadcast).items()}
    for name in alarm_site.members:
        expected = ["SKIPPED_BUSY"] if name in on_the_phone else ["CONFIRMED"]
        assert outcomes[name] == expected, name
    skipped = [a for a in broadcast["attempts"] if a["outcome"] == "SKIPPED_BUSY"]
    assert all(a["startedAt"] is None for a in skipped), "a skipped member is never dialled"


def test_an_alarm_with_a_message_recorded_in_the_call_plays_that_message(
    alarm_site: AlarmSite,
) -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:  # what a phone line records: 8 kHz would do, 16 kHz too
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((1234).to_bytes(2, "little", signed=True) * 32000)
    result = alarm_site.call([alarm_site.pin, "3", "1"], recording=buffer.getvalue())
    assert result.outcome is Outcome.POSTED, result
    broadcast = alarm_site.finished()
    assert broadcast["mode"] == "ALARM_RECORDED"
    assert Counter(a["outcome"] for a in broadcast["attempts"]) == {"CONFIRMED": 5}
    played = alarm_site.site.agent.state / "data" / "audio" / "recordings" / f"{result.job_id}.wav"
    with wave.open(str(played), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (8000, 1, 16000)
        assert w.readframes(1) == (1234).to_bytes(2, "little", signed=True)


def test_a_wrong_pin_raises_nothing_and_blocks_no_other_caller(alarm_site: AlarmSite) -> None:
    wrong = "0" if alarm_site.pin[0] != "0" else "1"
    refused = alarm_site.call([wrong * 6, wrong * 6, wrong * 6], caller="666")
    assert (refused.outcome, refused.job_id) == (Outcome.WRONG_PIN_HANGUP, None)
    assert alarm_site.pending_jobs() == [] and alarm_site.history() == []
    # Another caller with the right PIN is not slowed down by the guesser's throttle.
    result = alarm_site.call([alarm_site.pin, "2", "1"], caller="100")
    assert result.outcome is Outcome.POSTED and result.delays in ((), (0.0,))
    assert alarm_site.finished()["status"] == "COMPLETED"


COMMAND = "query($id: ID!) { command(id: $id) { status error result } }"


def test_an_admin_triggers_a_test_from_the_website_and_sees_it_in_the_history(
    alarm_site: AlarmSite,
) -> None:
    admin = alarm_site.site.admin
    group = group_named(alarm_site.site, GROUP)
    command = admin(
        "mutation($g: ID!) { triggerBroadcast(groupId: $g, mode: TEST) { id } }", g=group["id"]
    )["triggerBroadcast"]
    done = wait_until(
        lambda: (
            (c := admin(COMMAND, id=command["id"])["command"])["status"] != "PENDING"
            and c["status"] != "DELIVERED"
            and c
        ),
        20,
        "the trigger command",
    )
    assert done["status"] == "SUCCEEDED", done
    assert done["result"]["broadcastId"]
    broadcast = alarm_site.finished()
    assert (broadcast["mode"], broadcast["status"]) == ("TEST", "COMPLETED")
    assert broadcast["triggerCallerName"].endswith(">")  # "name <email>" of the admin
    assert Counter(a["outcome"] for a in broadcast["attempts"]) == {"CONFIRMED": 5}


def test_a_quorum_set_on_the_website_stops_the_alarm_early(alarm_site: AlarmSite) -> None:
    admin = alarm_site.site.admin
    group = group_named(alarm_site.site, GROUP)
    command = admin(
        "mutation($g: ID!) { updateBroadcastOptions(groupId: $g, quorum: 2, repetitions: 1) "
        "{ id } }",
        g=group["id"],
    )["updateBroadcastOptions"]
    wait_until(
        lambda: admin(COMMAND, id=command["id"])["command"]["status"] == "SUCCEEDED",
        20,
        "the options to reach the agent",
    )
    extensions_ = extensions(alarm_site)
    # Two answer at once, the others only after a long while: the quorum stops them.
    for extension in extensions_[2:]:
        alarm_site.script.script(extension, Behaviour.CONFIRM, after_s=250)
    for extension in extensions_[:2]:
        alarm_site.script.script(extension, Behaviour.CONFIRM, after_s=1)
    alarm_site.post("call-quorum")
    broadcast = alarm_site.finished()
    assert broadcast["quorum"] == 2 and broadcast["quorumReachedAt"] is not None
    assert "quorum of 2 reached" in broadcast["note"]
    outcomes = Counter(a["outcome"] for a in broadcast["attempts"])
    assert outcomes == {"CONFIRMED": 2, "FAILED": 3}
    stopped = [a for a in broadcast["attempts"] if a["outcome"] == "FAILED"]
    assert all("quorum" in a["detail"] and a["answeredAt"] is None for a in stopped)


def test_ten_wrong_pins_mail_the_tenant_once(alarm_site: AlarmSite, stack: Stack) -> None:
    wrong = "0" if alarm_site.pin[0] != "0" else "1"
    for caller in ("601", "602", "603", "604"):  # 3 tries each: 12 wrong PINs
        alarm_site.call([wrong * 6] * 3, caller=caller)
    url = stack.env["RUNDRUF_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")

    def mails() -> list[tuple[str, str]]:
        with psycopg.connect(url) as db:
            rows = db.execute(
                "SELECT to_address, subject FROM email WHERE tenant_id = %s",
                (alarm_site.site.tenant_id,),
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    found = wait_until(mails, 40, "the wrong-PIN mail in the outbox")
    assert all(f"falsche PINs für die Rundrufnummer {alarm_site.extension}" in s for _, s in found)
    assert len({to for to, _ in found}) == len(found), "one mail per address"
    # Forwarded once: the notice is gone from the job service.
    response = httpx.get(alarm_site.jobs.url + "/notices", headers=bearer(AGENT))
    wait_until(
        lambda: (
            httpx.get(alarm_site.jobs.url + "/notices", headers=bearer(AGENT)).json()["notices"]
            == []
        ),
        20,
        "the notice to be deleted",
    )
    assert response.status_code == 200


FAILED_TRIGGERS = """{ broadcasts(first: 5) { nodes { status startedAt groupName
  triggerCallerNumber memberCount note failureCode } } }"""


def test_a_damaged_job_file_is_mailed_and_shown_as_a_failed_trigger(
    alarm_site: AlarmSite, stack: Stack
) -> None:
    # Issue 14, point 8: the caller heard "ausgelöst", then the job file was damaged
    # (a disk fault while the service was down). It must not vanish without a trace.
    alarm_site.site.agent.stop()
    job_id = alarm_site.post("call-damaged", callerNumber="0711 4711")
    alarm_site.jobs.kill()
    path = alarm_site.jobs.root / "data" / "jobs" / f"{job_id}.json"
    text = path.read_bytes()
    received_at = json.loads(text)["receivedAt"]
    path.write_bytes(text[: text.index(b'"idempotencyKey"')])  # cut short
    alarm_site.jobs.start()
    health = httpx.get(alarm_site.jobs.url + "/health", headers=bearer(AGENT)).json()
    assert (health["status"], health["problems"]) == ("failing", ["quarantinedJobs"])
    assert alarm_site.pending_jobs() == []

    alarm_site.site.agent.start()
    url = stack.env["RUNDRUF_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")

    def mails() -> list[tuple[str, str]]:
        with psycopg.connect(url) as db:
            rows = db.execute(
                "SELECT to_address, subject FROM email WHERE tenant_id = %s AND subject LIKE %s",
                (alarm_site.site.tenant_id, "%nicht ausgeführt%"),
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    found = wait_until(mails, 40, "the damaged-job mail in the outbox")
    assert all(f"Rundrufnummer {alarm_site.extension}" in subject for _, subject in found)

    def failed() -> list[dict[str, Any]]:
        nodes = alarm_site.site.admin(FAILED_TRIGGERS)["broadcasts"]["nodes"]
        return [n for n in nodes if n["failureCode"] == "JOB_FILE_DAMAGED"]

    [trigger] = wait_until(failed, 20, "the failed trigger in the history")
    assert trigger["status"] == "FAILED" and trigger["memberCount"] == 0
    assert datetime.fromisoformat(trigger["startedAt"]) == datetime.fromisoformat(received_at)
    assert trigger["groupName"] == GROUP and trigger["triggerCallerNumber"] == "0711 4711"
    assert trigger["note"].endswith(f"-{job_id}.json")
    # Told: the job service is healthy again and keeps the bytes for an operator.
    wait_until(
        lambda: (
            httpx.get(alarm_site.jobs.url + "/health", headers=bearer(AGENT)).json()["status"]
            == "ok"
        ),
        20,
        "the quarantined job file to be marked reported",
    )
    reported = alarm_site.jobs.root / "data" / "quarantine" / "reported" / trigger["note"]
    assert reported.read_bytes() == text[: text.index(b'"idempotencyKey"')]
    # An agent restart reports nothing twice.
    alarm_site.site.agent.stop()
    alarm_site.site.agent.start()
    time.sleep(6)  # past the agent's first notice round (every 5 s)
    assert len(mails()) == len(found)
    assert len(failed()) == 1


LATE_HISTORY = """{ broadcasts(first: 5) { nodes { id mode status finishedAt
  attempts { memberName attemptNo outcome lateReason lateFrom lateUntil } } } }"""
SETTINGS = """mutation { updatePbxSettings(input: {broadcastTimeoutSeconds: 30}) {
  command { id } } }"""


def test_a_website_alarm_while_the_agent_is_down_past_the_timeout_calls_everyone_late(
    alarm_site: AlarmSite,
) -> None:
    """Issue 14, point 11: the alarm waits for the agent (not 15 minutes only), its age
    is measured in the server's clock, and every member gets one late call."""
    admin = alarm_site.site.admin
    command = admin(SETTINGS)["updatePbxSettings"]["command"]
    wait_until(
        lambda: admin(COMMAND, id=command["id"])["command"]["status"] == "SUCCEEDED",
        20,
        "the timeout to reach the agent",
    )
    group = group_named(alarm_site.site, GROUP)
    alarm_site.site.agent.stop()
    trigger = admin(
        "mutation($g: ID!) { triggerBroadcast(groupId: $g, mode: ALARM) "
        "{ id createdAt expiresAt agentConnection { state } } }",
        g=group["id"],
    )["triggerBroadcast"]
    created = datetime.fromisoformat(trigger["createdAt"])
    assert (datetime.fromisoformat(trigger["expiresAt"]) - created).total_seconds() == 86400
    time.sleep(33)  # longer than the broadcast timeout
    alarm_site.site.agent.start()

    def finished() -> dict[str, Any] | None:
        nodes = alarm_site.site.admin(LATE_HISTORY)["broadcasts"]["nodes"]
        return next((b for b in nodes if b["finishedAt"] is not None), None)

    broadcast = wait_until(finished, 90, "the late alarm to finish")
    assert Counter(a["memberName"] for a in broadcast["attempts"]) == Counter(alarm_site.members)
    for attempt in broadcast["attempts"]:
        assert (attempt["outcome"], attempt["lateReason"]) == ("CONFIRMED", "COMMAND_LATE")
        # The outage from the trigger on the server's clock (agent and server share one here).
        late_from = datetime.fromisoformat(attempt["lateFrom"])
        assert abs((late_from - created).total_seconds()) < 2
    assert admin(COMMAND, id=trigger["id"])["command"]["status"] == "SUCCEEDED"
