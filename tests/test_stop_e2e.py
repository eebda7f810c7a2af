"""Stopping a running broadcast end to end (issue 17, point 2): the real central service,
agent, job service and SwyxWare simulator (tests/test_alarm_e2e.py's site)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from edge_agent.dialer.sim import Behaviour
from edge_agent.pbx.sim_callflow import Outcome, Prompt
from tests.processes import wait_until
from tests.test_agent_e2e import Stack, group_named
from tests.test_alarm_e2e import GROUP, AlarmSite, alarm_site, extensions, stack

__all__ = ["alarm_site", "stack"]  # the fixtures, used by name

COMMAND = "query($id: ID!) { command(id: $id) { status result } }"
STOPPED = """{ broadcasts(first: 5) { nodes { id status finishedAt stoppedAt stoppedBy
  stoppedVia stopReason attempts { memberName attemptNo ringingAt outcome detail } } } }"""


def _nodes(site: AlarmSite) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = site.site.admin(STOPPED)["broadcasts"]["nodes"]
    return nodes


def _ringing(site: AlarmSite) -> dict[str, Any]:
    def ringing() -> dict[str, Any] | None:
        for b in _nodes(site):
            if b["status"] == "RUNNING" and any(a["ringingAt"] for a in b["attempts"]):
                return b
        return None

    found: dict[str, Any] = wait_until(ringing, 30, "a running broadcast with a ringing phone")
    return found


def _finished(site: AlarmSite) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        nodes = [b for b in _nodes(site) if b["finishedAt"] is not None]
        return nodes[0] if nodes else None

    found: dict[str, Any] = wait_until(done, 30, "the stopped broadcast in the history")
    return found


def test_an_admin_stops_a_running_alarm_from_the_website(alarm_site: AlarmSite) -> None:
    admin = alarm_site.site.admin
    for extension in extensions(alarm_site):  # every phone rings, nobody answers
        alarm_site.script.script(extension, Behaviour.NO_ANSWER)
    group = group_named(alarm_site.site, GROUP)
    admin("mutation($g: ID!) { triggerBroadcast(groupId: $g, mode: ALARM) { id } }", g=group["id"])
    running = _ringing(alarm_site)
    command = admin(
        'mutation($id: ID!) { cancelBroadcast(id: $id, reason: "Fehlalarm") { id } }',
        id=running["id"],
    )["cancelBroadcast"]
    done = wait_until(
        lambda: (c := admin(COMMAND, id=command["id"])["command"])["status"] == "SUCCEEDED" and c,
        20,
        "the cancel command",
    )
    assert done["result"]["stopped"]
    broadcast = _finished(alarm_site)
    assert broadcast["status"] == "CANCELLED"
    assert broadcast["stoppedVia"] == "WEBSITE"
    assert broadcast["stoppedBy"].endswith(">") and broadcast["stopReason"] == "Fehlalarm"
    assert broadcast["stoppedAt"] <= broadcast["finishedAt"]
    # Every call ended with the stop and none was tried again.
    assert {a["detail"] for a in broadcast["attempts"]} == {"broadcastStopped"}
    assert Counter(a["attemptNo"] for a in broadcast["attempts"]).keys() == {1}
    assert {a["outcome"] for a in broadcast["attempts"]} <= {"NO_ANSWER", "NOT_CALLED"}


def test_pin_then_0_on_the_simulated_pbx_stops_the_alarm_while_the_server_is_down(
    alarm_site: AlarmSite, stack: Stack
) -> None:
    """The simulator's twin of rundruf.lua posts a stop job (mode 0) to the job service;
    the agent stops the group's broadcast itself, with the central service stopped, and
    the history learns it once the service is back."""
    for extension in extensions(alarm_site):
        alarm_site.script.script(extension, Behaviour.NO_ANSWER)
    alarm_site.post("call-to-stop")
    _ringing(alarm_site)
    stack.server.stop()
    try:
        result = alarm_site.call([alarm_site.pin, "0"], caller="0301234")
        assert result.outcome is Outcome.POSTED, result
        assert result.prompts[-1] is Prompt.STOPPED
        # The stop job leaves the job service once the agent has carried it out (the
        # alarm's job stays until the central service has the whole report).
        wait_until(
            lambda: result.job_id not in {j["id"] for j in alarm_site.pending_jobs()},
            30,
            "the stop job to be done",
        )
    finally:
        stack.server.start(stack.logs)
    broadcast = _finished(alarm_site)
    assert broadcast["status"] == "CANCELLED"
    assert (broadcast["stoppedVia"], broadcast["stoppedBy"]) == ("PHONE", "0301234")
    assert {a["detail"] for a in broadcast["attempts"] if a["outcome"] == "NOT_CALLED"} <= {
        "broadcastStopped"
    }
