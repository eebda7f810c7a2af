from tests.conftest import error_codes


async def test_it_lists_the_owners_groups_with_members_and_pin(gql, world):
    data = await gql.as_(world.tokens["owner"]).ok(
        "{ groups { name members { name } broadcast { extension pin } } }"
    )
    groups = {g["name"]: g for g in data["groups"]}
    assert set(groups) == {"Brandschutz", "Empfang"}
    assert [m["name"] for m in groups["Brandschutz"]["members"]] == [
        "Member 0",
        "Member 1",
        "Member 2",
    ]
    assert groups["Brandschutz"]["broadcast"] == {"extension": "299", "pin": "4711"}
    assert groups["Empfang"]["broadcast"] is None


async def test_it_rejects_requests_without_a_session(gql, world):
    body = await gql("{ groups { name } }")
    assert error_codes(body) == ["UNAUTHENTICATED"]
