"""rundruf.lua's stop (issue 17, point 2): PIN, then 0 in the menu posts a stop job (mode
0) to the job service, kept there as durably as an alarm; the agent stops the group's
running broadcast (tests/test_stop_e2e.py runs that through the simulator's twin)."""

from __future__ import annotations

from tests.callrouting.test_lua_flow import AGENT, JOBS, PIN, START, call, lua, run

__all__ = ["lua"]  # the fixture, used by name


def test_pin_then_0_posts_a_stop_job_and_says_so(lua: str) -> None:
    (c,) = run(lua, call([PIN, "0"], caller="+4930123456", callId="call-7"))

    assert c.result == "stopped"
    (post,) = c.posts
    assert post["url"] == JOBS
    assert post["json"] == {
        "agentNumber": AGENT,
        "groupId": None,
        "mode": 0,
        "callerNumber": "+4930123456",
        "callerName": "Erika Muster",
        "idempotencyKey": f"{AGENT}-call-7-{START}",
        "recording": None,
        "recordingPath": None,
        "memberStates": None,
    }
    assert c.prompts == ["rundruf_pin.wav", "rundruf_menue.wav", "rundruf_beendet.wav"]
    assert c.hung_up


def test_a_stop_the_job_service_does_not_take_is_said_to_have_failed(lua: str) -> None:
    (c,) = run(lua, call([PIN, "0"], http=[{"status": 400}]))

    assert c.result == "post_failed"
    assert c.prompts[-1] == "rundruf_fehler.wav"
