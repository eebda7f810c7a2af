"""The audit log's page (issue 17, point 7): who sees which entries, its filters, paging
and the bounds of its arguments."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from typing import Any

from api.models import AuditLog
from tests.conftest import error_codes

LOG = """query($first: Int, $after: String, $filter: AuditFilter, $tenantId: ID) {
  auditLog(first: $first, after: $after, filter: $filter, tenantId: $tenantId) {
    nodes { id at action target tenantId tenantName actorId actorEmail details }
    pageInfo { endCursor hasNextPage }
  }
}"""


async def _entries(rt, world) -> None:
    """Tenant A: six entries by its admin and its viewer an hour apart; tenant B: two;
    the platform: one of no tenant."""
    base = rt.clock() - timedelta(days=2)
    rows = []
    for i, action in enumerate(
        ["group.create", "group.add_members", "broadcast.enable", "user.update", "pbx.verify"]
    ):
        rows.append(
            AuditLog(
                tenant_id=world.a.tenant_id,
                actor_user_id=world.a.admin_user_id,
                action=action,
                target=f"a-{i}",
                details={"n": i},
                at=base + timedelta(hours=i),
            )
        )
    rows.append(
        AuditLog(
            tenant_id=world.a.tenant_id,
            actor_user_id=world.a.viewer_user_id,
            action="password.change",
            target="a-viewer",
            at=base + timedelta(hours=5),
        )
    )
    for i in range(2):
        rows.append(
            AuditLog(
                tenant_id=world.b.tenant_id,
                actor_user_id=world.b.admin_user_id,
                action="group.create",
                target=f"b-{i}",
                at=base + timedelta(hours=i),
            )
        )
    rows.append(AuditLog(tenant_id=None, action="tenant.create", target="platform-0", at=base))
    async with rt.db.transaction() as s:
        s.add_all(rows)


async def _all(gql, token: str, **variables: Any) -> list[dict[str, Any]]:
    nodes, after = [], None
    while True:
        page = (await gql.as_(token).ok(LOG, first=2, after=after, **variables))["auditLog"]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


def _targets(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["target"] for n in nodes}


async def test_a_tenant_admin_sees_their_tenant_only_newest_first(gql, rt, world):
    await _entries(rt, world)
    nodes = await _all(gql, world.tokens["owner"])
    mine = [n for n in nodes if (n["target"] or "").startswith("a-")]
    assert [n["target"] for n in mine] == ["a-viewer", "a-4", "a-3", "a-2", "a-1", "a-0"]
    assert all(n["tenantId"] == str(world.a.tenant_id) for n in nodes)
    assert not _targets(nodes) & {"b-0", "b-1", "platform-0"}
    assert mine[1]["actorEmail"] == world.a.admin_email and mine[1]["details"] == {"n": 4}
    assert mine[1]["tenantName"] == "Owner AG"
    outsider = await _all(gql, world.tokens["outsider"])
    assert not {t for t in _targets(outsider) if t and t.startswith("a-")}


async def test_the_user_filter_offers_everyone_with_an_entry_in_scope(gql, rt, world):
    await _entries(rt, world)
    query = "{ auditLog(first: 1) { actors { id email } } }"
    mine = (await gql.as_(world.tokens["owner"]).ok(query))["auditLog"]["actors"]
    assert {a["email"] for a in mine} == {world.a.admin_email, world.a.viewer_email}
    everyone = (await gql.as_(world.tokens["platform"]).ok(query))["auditLog"]["actors"]
    assert {world.a.admin_email, world.b.admin_email} <= {a["email"] for a in everyone}


async def test_a_tenant_admin_cannot_name_another_tenant(gql, rt, world):
    await _entries(rt, world)
    body = await gql.as_(world.tokens["outsider"])(LOG, tenantId=str(world.a.tenant_id))
    assert error_codes(body) == ["NOT_FOUND"] and body["data"] is None


async def test_the_platform_admin_sees_everything_or_one_tenant(gql, rt, world):
    await _entries(rt, world)
    everything = _targets(await _all(gql, world.tokens["platform"]))
    assert {"a-0", "a-viewer", "b-0", "b-1", "platform-0"} <= everything
    only_b = await _all(gql, world.tokens["platform"], tenantId=str(world.b.tenant_id))
    assert {"b-0", "b-1"} <= _targets(only_b)
    assert all(n["tenantId"] == str(world.b.tenant_id) for n in only_b)


async def test_viewers_read_no_audit_log(gql, rt, world):
    await _entries(rt, world)
    body = await gql.as_(world.tokens["viewer"])(LOG)
    assert error_codes(body) == ["FORBIDDEN"] and body["data"] is None


async def test_filters_by_user_kind_and_time(gql, rt, world):
    await _entries(rt, world)
    owner = world.tokens["owner"]
    by_viewer = await _all(gql, owner, filter={"userId": str(world.a.viewer_user_id)})
    assert _targets(by_viewer) == {"a-viewer"}
    groups = await _all(gql, owner, filter={"kind": "group"})
    assert {"a-0", "a-1"} <= _targets(groups)
    assert all(n["action"].startswith("group.") for n in groups)
    exact = await _all(gql, owner, filter={"kind": "group.create"})
    assert all(n["action"] == "group.create" for n in exact) and "a-0" in _targets(exact)
    base = rt.clock() - timedelta(days=2)
    window = {
        "since": (base + timedelta(hours=1)).isoformat(),
        "until": (base + timedelta(hours=3)).isoformat(),
    }
    assert _targets(await _all(gql, owner, filter=window)) == {"a-1", "a-2"}


async def test_hostile_arguments_are_bad_input(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    now = rt.clock().isoformat()
    naive = base64.urlsafe_b64encode(f"2026-01-01T00:00:00|{uuid.uuid4()}".encode()).decode()
    for variables in [
        {"first": 0},
        {"first": 101},
        {"after": "bm9wZQ=="},
        # A naive time in the cursor (review of issue 17, L1: was a 500).
        {"after": naive},
        {"filter": {"kind": "group'; drop table audit_log; --"}},
        {"filter": {"kind": "x" * 5000}},
        {"filter": {"kind": ""}},
        {"filter": {"since": now, "until": now}},
        {"filter": {"since": "gestern"}},
    ]:
        body = await owner(LOG, **variables)
        assert error_codes(body) == ["BAD_USER_INPUT"], (variables, body)
        assert body["data"] is None and "Traceback" not in str(body)
