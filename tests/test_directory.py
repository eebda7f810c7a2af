import pytest
from sqlalchemy import func, select, text

from api.models import Command, PbxGroup
from tests.conftest import error_codes

UPDATE_AGENT = """mutation($g: ID!, $e: String, $p: String) {
  updateBroadcastAgent(groupId: $g, extension: $e, pin: $p) { id type status payload }
}"""


async def _command_count(rt):
    async with rt.db.reading() as s:
        return await s.scalar(select(func.count()).select_from(Command))


async def test_enable_broadcast_sends_a_command_with_a_sealed_pin(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(
        "mutation($g: ID!) { enableBroadcast(groupId: $g) { type status payload } }",
        g=str(world.a.plain_group_id),
    )
    command = data["enableBroadcast"]
    assert command["status"] == "PENDING"
    assert command["payload"]["agentName"] == "Rundruf Empfang"
    assert "pin" not in command["payload"]
    async with rt.db.reading() as s:
        sealed = (
            await s.execute(text("SELECT sealed_payload FROM command WHERE type='enableBroadcast'"))
        ).scalar_one()
    pin = __import__("json").loads(rt.box.open(sealed))["pin"]
    assert pin.isdigit() and len(pin) == 6
    assert pin not in sealed
    # The mirror is untouched until the agent reports: still no broadcast group.
    groups = await owner.ok("{ groups { id broadcast { extension } } }")
    plain = next(g for g in groups["groups"] if g["id"] == str(world.a.plain_group_id))
    assert plain["broadcast"] is None


async def test_enabling_a_broadcast_group_twice_is_a_conflict(gql, world):
    body = await gql.as_(world.tokens["owner"])(
        "mutation($g: ID!) { enableBroadcast(groupId: $g) { id } }", g=str(world.a.group_id)
    )
    assert error_codes(body) == ["CONFLICT"]


async def test_pins_are_ciphertext_in_the_database(rt, world):
    async with rt.db.reading() as s:
        rows = (await s.execute(text("SELECT row_to_json(b)::text FROM broadcast_group b"))).all()
    assert rows and not any('"4711"' in r[0] or ":4711" in r[0] for r in rows)


async def test_the_pin_is_shown_to_admins_only(gql, world):
    query = "query($id: ID!) { group(id: $id) { broadcast { pin extension } } }"
    owner = await gql.as_(world.tokens["owner"]).ok(query, id=str(world.a.group_id))
    viewer = await gql.as_(world.tokens["viewer"]).ok(query, id=str(world.a.group_id))
    staff = await gql.as_(world.tokens["platform"]).ok(query, id=str(world.a.group_id))
    assert owner["group"]["broadcast"] == {"pin": "4711", "extension": "299"}
    assert viewer["group"]["broadcast"] == {"pin": None, "extension": "299"}
    assert staff["group"]["broadcast"]["pin"] is None


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"p": "123"}, "pin"),
        ({"p": "123456789"}, "pin"),
        ({"p": "12a4"}, "pin"),
        ({"p": " 1234"}, "pin"),
        ({"e": "1"}, "extension"),
        ({"e": "12x"}, "extension"),
        ({}, "extension"),
    ],
)
async def test_it_rejects_bad_pins_and_numbers_and_sends_nothing(gql, rt, world, variables, field):
    before = await _command_count(rt)
    body = await gql.as_(world.tokens["owner"])(UPDATE_AGENT, g=str(world.a.group_id), **variables)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == field
    assert await _command_count(rt) == before


@pytest.mark.parametrize("pin", ["1234", "12345678"])
async def test_it_accepts_pins_of_four_to_eight_digits(gql, rt, world, pin):
    data = await gql.as_(world.tokens["owner"]).ok(UPDATE_AGENT, g=str(world.a.group_id), p=pin)
    assert data["updateBroadcastAgent"]["payload"] == {"groupPbxId": "g1", "extension": None}


async def test_an_extension_taken_on_the_pbx_is_a_conflict(gql, world):
    body = await gql.as_(world.tokens["owner"])(UPDATE_AGENT, g=str(world.a.group_id), e="201")
    assert error_codes(body) == ["CONFLICT"]


async def test_create_group_refuses_a_name_that_exists(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    body = await owner('mutation { createGroup(name: "Brandschutz") { id } }')
    assert error_codes(body) == ["CONFLICT"]
    ok = await owner.ok('mutation { createGroup(name: "Technik") { type payload } }')
    assert ok["createGroup"]["payload"] == {"name": "Technik", "description": None}
    async with rt.db.reading() as s:
        names = set(await s.scalars(select(PbxGroup.name)))
    assert "Technik" not in names  # only the agent's report adds it to the mirror


async def test_members_from_another_tenant_are_not_found(gql, rt, world):
    before = await _command_count(rt)
    body = await gql.as_(world.tokens["owner"])(
        "mutation($g: ID!, $u: [ID!]!) { addGroupMembers(groupId: $g, userIds: $u) { id } }",
        g=str(world.a.plain_group_id),
        u=[str(world.a.users[0]), str(world.b.users[0])],
    )
    assert error_codes(body) == ["NOT_FOUND"]
    assert await _command_count(rt) == before


async def test_add_members_names_them_by_their_pbx_ids(gql, world):
    data = await gql.as_(world.tokens["owner"]).ok(
        "mutation($g: ID!, $u: [ID!]!) { addGroupMembers(groupId: $g, userIds: $u) { payload } }",
        g=str(world.a.plain_group_id),
        u=[str(world.a.users[1]), str(world.a.users[0])],
    )
    assert data["addGroupMembers"]["payload"] == {"groupPbxId": "g2", "userPbxIds": ["u0", "u1"]}
