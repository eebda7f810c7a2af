"""The contract every `Pbx` adapter keeps, run against each of them.

An adapter's test module subclasses `PbxContract` and provides the `pbx`
fixture: a logged-in adapter whose directory holds at least the seed below
(`SEED_USERS` with their extensions, and `SEED_GROUP` with its members). Other
users and groups may exist, so the cases look up the seed by name and never
count the whole directory.
"""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.pbx.errors import PbxConflict, PbxNotFound, PbxRefused
from edge_agent.pbx.port import Directory, Group, Pbx, User

SEED_USERS = (("Anna Berger", "201"), ("Bernd Clausen", "202"), ("Carla Dietz", "203"))
SEED_GROUP = ("Brandschutz", ("Anna Berger", "Bernd Clausen"))
UNKNOWN_ID = "999999"


def user_named(directory: Directory, name: str) -> User:
    (user,) = [u for u in directory.users if u.name == name]
    return user


def group_named(directory: Directory, name: str) -> Group:
    (group,) = [g for g in directory.groups if g.name == name]
    return group


async def ids(pbx: Pbx, *names: str) -> list[str]:
    directory = await pbx.directory()
    return [user_named(directory, name).id for name in names]


class PbxContract:
    @pytest.fixture
    async def pbx(self) -> Any:
        raise NotImplementedError("an adapter's test class provides the seeded, logged-in pbx")

    async def test_it_lists_the_seeded_users_with_their_extensions(self, pbx: Pbx) -> None:
        directory = await pbx.directory()

        for name, extension in SEED_USERS:
            user = user_named(directory, name)
            assert user.extension == extension
            assert not user.callrouting_only
        assert len({u.id for u in directory.users}) == len(directory.users)

    async def test_it_lists_groups_with_their_members(self, pbx: Pbx) -> None:
        directory = await pbx.directory()

        name, members = SEED_GROUP
        group = group_named(directory, name)
        assert set(group.member_ids) == set(await ids(pbx, *members))

    async def test_it_creates_a_user_with_the_extension_given(self, pbx: Pbx) -> None:
        user = await pbx.create_user("Dora Engel", "Lager", extension="251")

        assert (user.name, user.extension, user.description) == ("Dora Engel", "251", "Lager")
        assert user_named(await pbx.directory(), "Dora Engel") == user

    async def test_it_creates_a_user_on_the_next_free_extension(self, pbx: Pbx) -> None:
        free = await pbx.next_free_extension()

        user = await pbx.create_user("Dora Engel", "Lager")

        assert user.extension == free
        assert user_named(await pbx.directory(), "Dora Engel").extension == free

    async def test_it_creates_call_routing_only_users(self, pbx: Pbx) -> None:
        agent = await pbx.create_user("Rundruf Agent", "Rundruf", callrouting_only=True)

        assert agent.callrouting_only
        assert user_named(await pbx.directory(), "Rundruf Agent").callrouting_only

    async def test_it_rejects_a_duplicate_extension(self, pbx: Pbx) -> None:
        with pytest.raises(PbxConflict) as refused:
            await pbx.create_user("Dora Engel", "", extension="201")

        assert refused.value.permanent
        assert "201" in refused.value.message
        assert "Dora Engel" not in {u.name for u in (await pbx.directory()).users}

    async def test_it_rejects_changing_to_an_extension_in_use(self, pbx: Pbx) -> None:
        (carla,) = await ids(pbx, "Carla Dietz")

        with pytest.raises(PbxConflict):
            await pbx.update_user(carla, extension="202")

        assert user_named(await pbx.directory(), "Carla Dietz").extension == "203"

    async def test_it_updates_extension_and_description(self, pbx: Pbx) -> None:
        (carla,) = await ids(pbx, "Carla Dietz")

        same = await pbx.update_user(carla, extension="203")
        moved = await pbx.update_user(carla, extension="253", description="Einkauf")

        assert same.extension == "203"
        assert (moved.extension, moved.description) == ("253", "Einkauf")
        assert user_named(await pbx.directory(), "Carla Dietz") == moved

    async def test_it_rejects_a_duplicate_user_name(self, pbx: Pbx) -> None:
        with pytest.raises(PbxConflict):
            await pbx.create_user("Anna Berger", "", extension="252")

    async def test_it_rejects_an_extension_that_is_not_digits(self, pbx: Pbx) -> None:
        with pytest.raises(PbxRefused):
            await pbx.create_user("Dora Engel", "", extension="2x1")

    async def test_it_rejects_unknown_users(self, pbx: Pbx) -> None:
        group = group_named(await pbx.directory(), SEED_GROUP[0])

        with pytest.raises(PbxNotFound):
            await pbx.update_user(UNKNOWN_ID, description="x")
        with pytest.raises(PbxNotFound):
            await pbx.delete_user(UNKNOWN_ID)
        with pytest.raises(PbxNotFound):
            await pbx.set_agent_pin(UNKNOWN_ID, "1234")
        with pytest.raises(PbxNotFound):
            await pbx.add_group_members(group.id, [UNKNOWN_ID])

    async def test_it_rejects_unknown_groups(self, pbx: Pbx) -> None:
        (anna,) = await ids(pbx, "Anna Berger")

        with pytest.raises(PbxNotFound):
            await pbx.add_group_members(UNKNOWN_ID, [anna])
        with pytest.raises(PbxNotFound):
            await pbx.remove_group_members(UNKNOWN_ID, [anna])

    async def test_adding_members_twice_is_no_error(self, pbx: Pbx) -> None:
        anna, carla = await ids(pbx, "Anna Berger", "Carla Dietz")
        group = group_named(await pbx.directory(), SEED_GROUP[0])

        await pbx.add_group_members(group.id, [carla])
        again = await pbx.add_group_members(group.id, [carla, anna])

        assert sorted(again.member_ids) == sorted(set(group.member_ids) | {carla})
        stored = group_named(await pbx.directory(), SEED_GROUP[0])
        assert sorted(stored.member_ids) == sorted(again.member_ids)

    async def test_removing_non_members_is_no_error(self, pbx: Pbx) -> None:
        anna, carla = await ids(pbx, "Anna Berger", "Carla Dietz")
        group = group_named(await pbx.directory(), SEED_GROUP[0])

        left = await pbx.remove_group_members(group.id, [anna, carla])
        again = await pbx.remove_group_members(group.id, [anna])

        assert anna not in left.member_ids
        assert set(again.member_ids) == set(group.member_ids) - {anna}
        assert anna not in group_named(await pbx.directory(), SEED_GROUP[0]).member_ids

    async def test_it_creates_a_group_and_rejects_its_name_twice(self, pbx: Pbx) -> None:
        created = await pbx.create_group("Ersthelfer", "Erste Hilfe")

        assert (created.name, created.description, created.member_ids) == (
            "Ersthelfer",
            "Erste Hilfe",
            (),
        )
        assert group_named(await pbx.directory(), "Ersthelfer") == created
        with pytest.raises(PbxConflict):
            await pbx.create_group("Ersthelfer", "")
        with pytest.raises(PbxConflict):
            await pbx.create_group(SEED_GROUP[0], "")

    async def test_deleting_a_user_removes_them_from_groups(self, pbx: Pbx) -> None:
        (anna,) = await ids(pbx, "Anna Berger")

        await pbx.delete_user(anna)

        directory = await pbx.directory()
        assert anna not in {u.id for u in directory.users}
        assert all(anna not in g.member_ids for g in directory.groups)

    async def test_next_free_extension_skips_the_used_ones(self, pbx: Pbx) -> None:
        used = {u.extension for u in (await pbx.directory()).users}

        free = await pbx.next_free_extension()
        await pbx.create_user("Dora Engel", "", extension=free)
        after = await pbx.next_free_extension()

        assert free.isdigit() and free not in used
        assert after.isdigit() and after not in used | {free}

    async def test_it_sets_an_agent_pin_only_on_call_routing_users(self, pbx: Pbx) -> None:
        (anna,) = await ids(pbx, "Anna Berger")
        agent = await pbx.create_user("Rundruf Agent", "Rundruf", callrouting_only=True)

        await pbx.set_agent_pin(agent.id, "482913")
        with pytest.raises(PbxRefused):
            await pbx.set_agent_pin(anna, "482913")

    async def test_names_and_descriptions_are_kept_as_given(self, pbx: Pbx) -> None:
        # Shell and PowerShell syntax in a name is a name: it must come back unchanged.
        odd = 'O\'Brien; Remove-Item $(x) "q" `t ä'

        user = await pbx.create_user(odd, odd)
        group = await pbx.create_group(odd, odd)
        await pbx.add_group_members(group.id, [user.id])

        directory = await pbx.directory()
        assert (user_named(directory, odd).description, user.name) == (odd, odd)
        assert group_named(directory, odd).member_ids == (user.id,)

    async def test_a_call_routing_user_stays_one_when_changed(self, pbx: Pbx) -> None:
        agent = await pbx.create_user("Rundruf Agent", "Rundruf", callrouting_only=True)
        free = await pbx.next_free_extension()

        changed = await pbx.update_user(agent.id, extension=free, description="Rundruf neu")

        assert (changed.callrouting_only, changed.extension) == (True, free)
        stored = user_named(await pbx.directory(), "Rundruf Agent")
        assert (stored.callrouting_only, stored.description) == (True, "Rundruf neu")
        await pbx.set_agent_pin(agent.id, "482913")
