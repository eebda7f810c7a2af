"""One string can no longer stop a tenant's agent (issue 14, point 1), end to end: the
real central service on PostgreSQL, the real agent process, the SwyxWare simulator and
the simulated dialer. Texts typed into the PBX behind the website's back, that PostgreSQL
refuses (NUL) or the mirror cannot hold (too long), reach the website cleaned, and the
test broadcast after them runs and reaches the history."""

from __future__ import annotations

from collections import Counter

from edge_agent.pbx.port import UserState
from tests import test_agent_e2e as channel_e2e
from tests.processes import wait_until
from tests.test_agent_e2e import group_named, wait_command
from tests.test_alarm_e2e import GROUP, AlarmSite, alarm_site

# The channel tests' fixture: this module gets a server of its own.
stack = channel_e2e.stack
__all__ = ["alarm_site", "stack"]  # fixtures, used by name

COMMAND = "query($id: ID!) { command(id: $id) { status error result } }"
USERS = "{ pbxUsers { id name extension description } }"


def test_a_poisoned_pbx_directory_stops_nothing_and_the_test_broadcast_after_it_runs(
    alarm_site: AlarmSite,
) -> None:
    site, admin = alarm_site.site, alarm_site.site.admin
    poisoned = site.sim.add_user("Max\x00Mustermann", state=UserState.LOGGED_ON)
    site.sim.add_user("L" * 300, "1" * 40, description="Notruf\x1b[31m\x07")
    site.sim.add_group("Nacht\x00schicht", [poisoned], description="Brand\x00schutz\nHaus 2")

    # The old agent's answer to this was refused by PostgreSQL, and it tried again
    # forever: no later command ran.
    sync = admin("mutation { syncDirectory { id } }")["syncDirectory"]
    assert wait_command(admin, sync["id"], 30)["status"] == "SUCCEEDED"
    users = {u["name"]: u for u in admin(USERS)["pbxUsers"]}
    assert "Max\ufffdMustermann" in users
    assert users["L" * 200]["extension"] is None  # never a number cut short
    assert users["L" * 200]["description"] == "Notruf\ufffd[31m\ufffd"
    night = group_named(site, "Nacht\ufffdschicht")
    assert [m["name"] for m in night["members"]] == ["Max\ufffdMustermann"]

    # The poisoned user joins the broadcast group through the website and the agent.
    group = group_named(site, GROUP)
    added = admin(
        "mutation($g: ID!, $u: [ID!]!) { addGroupMembers(groupId: $g, userIds: $u) { id } }",
        g=group["id"],
        u=[users["Max\ufffdMustermann"]["id"]],
    )["addGroupMembers"]
    assert wait_command(admin, added["id"], 30)["status"] == "SUCCEEDED"

    trigger = admin(
        "mutation($g: ID!) { triggerBroadcast(groupId: $g, mode: TEST) { id } }", g=group["id"]
    )["triggerBroadcast"]
    done = wait_command(admin, trigger["id"], 30)
    assert done["status"] == "SUCCEEDED", done
    broadcast = alarm_site.finished()
    assert (broadcast["mode"], broadcast["status"]) == ("TEST", "COMPLETED")
    assert Counter(a["outcome"] for a in broadcast["attempts"]) == {"CONFIRMED": 6}
    assert "Max\ufffdMustermann" in {a["memberName"] for a in broadcast["attempts"]}
    wait_until(
        lambda: "Traceback" not in site.agent.log.read_text(), 5, "an agent log without a trace"
    )
