"""The wrong-PIN throttle's file (edge_agent/pbx/sim_throttle.py, the agent's IVR and the
simulator share it): callers whose count is forgotten leave it, and a look that changes
nothing (a wait) does not write it."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.ivr.guard import PinGuard
from edge_agent.ivr.notices import NoticeOutbox
from edge_agent.pbx.sim_throttle import KEEP_CALLERS, ThrottleFile, ThrottleRules

AGENT = "7701"


def test_forgotten_callers_leave_the_file(tmp_path: Path) -> None:
    rules = ThrottleRules()
    file = ThrottleFile(tmp_path / "pins")
    now, spacing = 1_800_000_000.0, 10.0
    for n in range(1000):  # a new number each time, for almost three hours
        file.update(AGENT, lambda t, n=n: t.record_wrong(f"+4930{n:06d}", now + n * spacing, rules))
    data = json.loads(file.path.read_text(encoding="utf-8"))
    callers = data["agents"][AGENT]["callers"]
    # Only the last hour's (throttle_forget) callers are remembered, not all 1000.
    assert len(callers) <= rules.forget_s / spacing + 1
    assert "+4930000999" in callers and "+4930000000" not in callers
    # Numbers rotated faster: at most KEEP_CALLERS, the most recent.
    for n in range(1500):
        file.update(AGENT, lambda t, n=n: t.record_wrong(f"+4940{n:06d}", now + 20_000 + n, rules))
    callers = json.loads(file.path.read_text(encoding="utf-8"))["agents"][AGENT]["callers"]
    assert len(callers) == KEEP_CALLERS
    assert "+4940001499" in callers and "+4940000000" not in callers


async def test_a_wait_does_not_write_the_file(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    guard = PinGuard(tmp_path, NoticeOutbox(tmp_path), clock=lambda: now)
    await guard.wrong(AGENT, "+4930111")
    path = tmp_path / "ivr" / "pins.trigger.json"
    before = path.stat()
    assert await guard.wait(AGENT, "+4930111") > 0
    assert await guard.wait(AGENT, "+4930222") == 0
    assert await guard.wait("7702", "+4930222") == 0  # an agent number with nothing yet
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
