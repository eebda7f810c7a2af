"""Who sees which incidents: the monitoring query and each tenant's own."""

from __future__ import annotations

from sqlalchemy import update

from api.models import Installation
from api.services.watchdog import sweep
from tests.conftest import error_codes

INCIDENTS = (
    "query($tenantId: ID, $openOnly: Boolean! = true) "
    "{ incidents(tenantId: $tenantId, openOnly: $openOnly) "
    "{ id tenantId installationId hostname kind closedAt } }"
)
MONITORING = (
    "query($tenantId: ID) { installations(tenantId: $tenantId) "
    "{ id hostname openIncidents { kind hostname } } }"
)


async def _both_failing(rt, world) -> None:
    async with rt.db.transaction() as s:
        await s.execute(
            update(Installation)
            .where(Installation.id == world.a.installation_id)
            .values(pbx_reachable=False)
        )
        await s.execute(
            update(Installation)
            .where(Installation.id == world.b.installation_id)
            .values(alarm_service_ok=False)
        )
    await sweep(rt)


async def test_each_tenant_sees_only_its_own_incidents(gql, rt, world):
    await _both_failing(rt, world)
    for token, tenant, kind, host in (
        ("owner", world.a, "PBX_UNREACHABLE", "swyx.owner.example"),
        ("viewer", world.a, "PBX_UNREACHABLE", "swyx.owner.example"),
        ("outsider", world.b, "ALARM_SERVICE_FAILED", "swyx.outsider.example"),
    ):
        data = await gql.as_(world.tokens[token]).ok(INCIDENTS)
        [incident] = data["incidents"]
        assert incident["tenantId"] == str(tenant.tenant_id)
        assert (incident["kind"], incident["hostname"]) == (kind, host)
    denied = await gql.as_(world.tokens["outsider"])(INCIDENTS, tenantId=str(world.a.tenant_id))
    assert error_codes(denied) == ["NOT_FOUND"]


async def test_the_platform_admin_sees_every_tenants_open_incidents(gql, rt, world):
    await _both_failing(rt, world)
    platform = gql.as_(world.tokens["platform"])
    data = await platform.ok(INCIDENTS)
    assert {i["kind"] for i in data["incidents"]} == {"PBX_UNREACHABLE", "ALARM_SERVICE_FAILED"}
    only_a = await platform.ok(INCIDENTS, tenantId=str(world.a.tenant_id))
    assert [i["kind"] for i in only_a["incidents"]] == ["PBX_UNREACHABLE"]
    monitoring = await platform.ok(MONITORING)
    by_host = {i["hostname"]: i["openIncidents"] for i in monitoring["installations"]}
    assert by_host == {
        "swyx.owner.example": [{"kind": "PBX_UNREACHABLE", "hostname": "swyx.owner.example"}],
        "swyx.outsider.example": [
            {"kind": "ALARM_SERVICE_FAILED", "hostname": "swyx.outsider.example"}
        ],
    }


async def test_closed_incidents_show_only_when_asked_for(gql, rt, world):
    await _both_failing(rt, world)
    async with rt.db.transaction() as s:
        await s.execute(
            update(Installation)
            .where(Installation.id == world.a.installation_id)
            .values(pbx_reachable=True)
        )
    await sweep(rt)
    owner = gql.as_(world.tokens["owner"])
    assert (await owner.ok(INCIDENTS))["incidents"] == []
    [closed] = (await owner.ok(INCIDENTS, openOnly=False))["incidents"]
    assert closed["closedAt"] is not None
    monitoring = await owner.ok(MONITORING)
    assert monitoring["installations"][0]["openIncidents"] == []
