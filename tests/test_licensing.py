from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from api.models import Command, License
from tests.conftest import error_codes

ENABLE = "mutation($g: ID!) { enableBroadcast(groupId: $g) { id } }"
ADD = "mutation($g: ID!, $u: [ID!]!) { addGroupMembers(groupId: $g, userIds: $u) { id } }"


async def _set_seats(rt, tenant_id, seats):
    async with rt.db.transaction() as s:
        await s.execute(update(License).where(License.tenant_id == tenant_id).values(seats=seats))


async def _commands(rt):
    async with rt.db.reading() as s:
        return await s.scalar(select(func.count()).select_from(Command))


async def test_adding_members_past_the_seats_is_refused_before_any_command(gql, rt, world):
    # The broadcast group has 3 members; a fourth participant needs a fourth seat.
    await _set_seats(rt, world.a.tenant_id, 3)
    extra = await gql.as_(world.tokens["owner"]).ok("{ pbxUsers { id name } }")
    agent = next(u["id"] for u in extra["pbxUsers"] if u["name"] == "Rundruf Brandschutz")
    before = await _commands(rt)
    body = await gql.as_(world.tokens["owner"])(ADD, g=str(world.a.group_id), u=[agent])
    assert error_codes(body) == ["CONFLICT"]
    assert body["errors"][0]["extensions"]["reason"] == "SEATS"
    assert "4 participants" in body["errors"][0]["message"]
    assert await _commands(rt) == before
    # Members already counted take no new seat.
    ok = await gql.as_(world.tokens["owner"])(
        ADD, g=str(world.a.group_id), u=[str(world.a.users[0])]
    )
    assert not ok.get("errors")


async def test_members_of_a_plain_group_need_no_seats(gql, rt, world):
    await _set_seats(rt, world.a.tenant_id, 3)
    agent_free = await gql.as_(world.tokens["owner"]).ok("{ pbxUsers { id name } }")
    someone = next(u["id"] for u in agent_free["pbxUsers"] if u["name"] == "Rundruf Brandschutz")
    body = await gql.as_(world.tokens["owner"])(ADD, g=str(world.a.plain_group_id), u=[someone])
    assert not body.get("errors")


async def test_converting_a_group_counts_its_members_against_the_seats(gql, rt, world):
    async with rt.db.transaction() as s:
        from api.models import PbxGroupMember

        for user_id in world.a.users:
            s.add(
                PbxGroupMember(
                    group_id=world.a.plain_group_id, user_id=user_id, tenant_id=world.a.tenant_id
                )
            )
    await _set_seats(rt, world.a.tenant_id, 2)
    body = await gql.as_(world.tokens["owner"])(ENABLE, g=str(world.a.plain_group_id))
    assert error_codes(body) == ["CONFLICT"]
    assert body["errors"][0]["extensions"]["reason"] == "SEATS"
    await _set_seats(rt, world.a.tenant_id, 3)  # the same 3 people: no new seat
    assert not (await gql.as_(world.tokens["owner"])(ENABLE, g=str(world.a.plain_group_id))).get(
        "errors"
    )


@pytest.mark.parametrize("how", ["expired", "revoked"])
async def test_without_a_valid_license_configuration_changes_are_refused(gql, rt, world, how):
    values = (
        {"valid_until": rt.clock() - timedelta(days=1)}
        if how == "expired"
        else {"revoked_at": rt.clock()}
    )
    async with rt.db.transaction() as s:
        await s.execute(
            update(License).where(License.tenant_id == world.a.tenant_id).values(**values)
        )
    before = await _commands(rt)
    owner = gql.as_(world.tokens["owner"])
    for document, variables in [
        ('mutation { createGroup(name: "Neu") { id } }', {}),
        (ENABLE, {"g": str(world.a.plain_group_id)}),
        ("mutation { updatePbxSettings(input: {pollIntervalSeconds: 30}) { command { id } } }", {}),
        (
            'mutation($g: ID!) { synthesizeAnnouncement(groupId: $g, kind: TEST, text: "Test", '
            "language: DE) { announcement { id } } }",
            {"g": str(world.a.group_id)},
        ),
    ]:
        body = await owner(document, **variables)
        assert error_codes(body) == ["CONFLICT"], document
        assert body["errors"][0]["extensions"]["reason"] == "LICENSE"
        assert "alarms keep working" in body["errors"][0]["message"]
    assert await _commands(rt) == before
    # Reading goes on.
    assert (await owner.ok("{ groups { name } }"))["groups"]
