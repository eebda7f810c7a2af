import pytest
from sqlalchemy import func, select, text

from api.models import Command, PbxSettings
from tests.conftest import error_codes

UPDATE = """mutation($input: PbxSettingsInput!) {
  updatePbxSettings(input: $input) {
    settings { host adminUser adminPasswordSet pollIntervalSeconds broadcastTimeoutSeconds
               verificationState }
    command { id type status payload }
  }
}"""


async def _commands(rt, tenant_id):
    async with rt.db.reading() as s:
        return await s.scalar(
            select(func.count()).select_from(Command).where(Command.tenant_id == tenant_id)
        )


async def test_the_pbx_password_is_ciphertext_in_the_database_and_never_returned(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(UPDATE, input={"adminPassword": "Sup3r-Geheim!"})
    assert data["updatePbxSettings"]["settings"]["adminPasswordSet"] is True
    async with rt.db.reading() as s:
        raw = (
            await s.execute(
                text("SELECT admin_password_sealed FROM pbx_settings WHERE tenant_id = :t"),
                {"t": world.a.tenant_id},
            )
        ).scalar_one()
        dump = (await s.execute(text("SELECT row_to_json(p)::text FROM pbx_settings p"))).all()
    assert "Sup3r-Geheim!" not in raw
    assert not any("Sup3r-Geheim!" in row[0] for row in dump)
    assert rt.box.open(raw) == "Sup3r-Geheim!"
    schema = await owner.ok('{ __type(name: "PbxSettings") { fields { name } } }')
    assert "adminPassword" not in {f["name"] for f in schema["__type"]["fields"]}


async def test_poll_interval_and_timeout_reach_the_agent_as_one_command(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(UPDATE, input={"pollIntervalSeconds": 30, "broadcastTimeoutSeconds": 600})
    change = data["updatePbxSettings"]
    assert change["settings"]["pollIntervalSeconds"] == 30
    assert change["command"]["type"] == "updateSettings"
    assert change["command"]["status"] == "PENDING"
    assert change["command"]["payload"] == {
        "pollIntervalSeconds": 30,
        "broadcastTimeoutSeconds": 600,
    }
    # Saving the same values again sends nothing.
    again = await owner.ok(UPDATE, input={"pollIntervalSeconds": 30})
    assert again["updatePbxSettings"]["command"] is None


async def test_changing_credentials_needs_a_new_verification(gql, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(UPDATE, input={"host": "pbx.owner.example", "adminUser": "admin2"})
    assert data["updatePbxSettings"]["settings"]["verificationState"] == "UNVERIFIED"
    assert data["updatePbxSettings"]["command"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pollIntervalSeconds", 1),
        ("pollIntervalSeconds", 100000),
        ("broadcastTimeoutSeconds", 5),
        ("host", "http://pbx/"),
        ("host", "pbx; rm -rf /"),
        ("adminUser", "   "),
        ("adminPassword", ""),
    ],
)
async def test_it_rejects_bad_settings_and_changes_nothing(gql, rt, world, field, value):
    owner = gql.as_(world.tokens["owner"])
    async with rt.db.reading() as s:
        before = (await s.get(PbxSettings, world.a.tenant_id)).__dict__.copy()
    commands_before = await _commands(rt, world.a.tenant_id)
    # One valid change beside the bad one: it must not be saved either.
    body = await owner(UPDATE, input={"pollIntervalSeconds": 45, "adminUser": "x", field: value})
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == field
    async with rt.db.reading() as s:
        after = await s.get(PbxSettings, world.a.tenant_id)
    assert after.poll_interval_seconds == before["poll_interval_seconds"]
    assert after.admin_user == before["admin_user"]
    assert after.broadcast_timeout_seconds == before["broadcast_timeout_seconds"]
    assert after.host == before["host"]
    assert after.admin_password_sealed == before["admin_password_sealed"]
    assert await _commands(rt, world.a.tenant_id) == commands_before


async def test_verify_sends_the_password_sealed_to_the_agent(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(
        "mutation { verifyPbxCredentials { settings { verificationState } "
        "command { id type payload } } }"
    )
    result = data["verifyPbxCredentials"]
    assert result["settings"]["verificationState"] == "PENDING"
    assert result["command"]["type"] == "verifyPbxCredentials"
    assert result["command"]["payload"] == {"host": "swyx.owner.example", "adminUser": "swyxadmin"}
    async with rt.db.reading() as s:
        sealed = (
            await s.execute(
                text("SELECT sealed_payload FROM command WHERE type = 'verifyPbxCredentials'")
            )
        ).scalar_one()
    assert "pbx-secret" not in sealed
    assert "pbx-secret" in rt.box.open(sealed)


async def test_verify_without_credentials_asks_for_them(gql, world, rt):
    async with rt.db.transaction() as s:
        await s.execute(text("DELETE FROM pbx_settings"))
    body = await gql.as_(world.tokens["owner"])(
        "mutation { verifyPbxCredentials { settings { verificationState } } }"
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]
