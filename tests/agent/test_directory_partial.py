"""A directory entry the agent cannot read is not a deleted one (issue 14, point 1, review
point 4): the SwyxWare adapter marks such a directory partial, the agent's cache keeps the
previous entry (an alarm for that group still calls its members), and the wire shape says
partial so that the server deletes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.broadcast.model import Mode, plan_group
from edge_agent.cache import LocalCache, directory_json
from edge_agent.pbx.swyx import SwyxPbx
from tests.agent.swyx_fake import ADMIN, PASSWORD, SERVER, FakeSwyx


async def test_a_group_the_pbx_answers_without_its_id_keeps_its_members_in_the_cache(
    tmp_path: Path,
) -> None:
    fake = FakeSwyx.seeded()
    pbx = SwyxPbx(fake)
    await pbx.login(SERVER, ADMIN, PASSWORD)
    cache = LocalCache(tmp_path)
    before = await pbx.directory()
    assert not before.partial
    cache.set_directory(before)
    target = next(g for g in before.groups if g.member_ids)
    real = fake._directory

    def glitch(p: dict[str, Any]) -> Any:
        data = real(p)
        data["Groups"] = [
            dict(g, GroupID=None) if str(g.get("GroupID")) == target.id else g
            for g in data["Groups"]
        ]
        return data

    fake._directory = glitch  # type: ignore[method-assign]
    after = await pbx.directory()
    assert after.partial
    assert target.id not in {g.id for g in after.groups}
    assert directory_json(after)["partial"] is True
    cache.set_directory(after)
    plan = plan_group(target.id, {"agentUserId": None}, cache.data["directory"], Mode(2), {})
    assert {m.pbx_id for m in plan.members} == set(target.member_ids)
    # Read whole again: a complete directory replaces the cache as it is.
    fake._directory = real  # type: ignore[method-assign]
    again = await pbx.directory()
    assert not again.partial
    cache.set_directory(again)
    assert cache.data["directory"] == directory_json(again)
