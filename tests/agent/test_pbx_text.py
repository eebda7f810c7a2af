"""Text from the PBX is cleaned where it becomes a `User` or `Group`, in every adapter:
a NUL, a control, a lone surrogate or an over-long name never refuses the directory."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.cache import directory_json
from edge_agent.pbx import text
from edge_agent.pbx.port import Directory, Group, User
from edge_agent.pbx.sim import SimControl, SimPbx
from edge_agent.pbx.swyx import SwyxPbx
from tests.agent.swyx_fake import ADMIN, PASSWORD, SERVER, FakeSwyx

HOST, SIM_ADMIN, SIM_PASSWORD = "swyx.local", "admin", "geheim"


def assert_storable(directory: Directory) -> None:
    """What the central mirror stores without refusal: UTF-8, printable, within its columns."""
    json.dumps(directory_json(directory), ensure_ascii=False).encode("utf-8")
    for user in directory.users:
        assert user.name.isprintable() and len(user.name) <= 200
        assert user.description.isprintable() and len(user.description) <= 2000
        assert user.extension is None or (
            user.extension.isprintable() and len(user.extension) <= 32
        )
    for group in directory.groups:
        assert group.name.isprintable() and len(group.name) <= 200
        assert group.description.isprintable() and len(group.description) <= 2000


def test_unsafe_characters_are_replaced_and_long_texts_cut() -> None:
    user = User("7", "Max\x00Muster\ud800mann", "201", "Zeile 1\r\nZeile 2\x1b[31m" + "x" * 3000)
    assert user.name == "Max\ufffdMuster\ufffdmann"
    assert user.description.startswith("Zeile 1  Zeile 2\ufffd[31m")
    assert len(user.description) == 2000
    assert User("8", "N" * 500, None).name == "N" * 200
    # Nothing else changes: umlauts, emoji, a non-breaking space stay.
    assert User("9", "Jürgen\u00a0Groß 🚒", "202").name == "Jürgen\u00a0Groß 🚒"


def test_a_number_that_cannot_be_one_is_no_number_never_a_shorter_one() -> None:
    # Cut or patched, a number would call someone else.
    assert User("7", "A", "1" * 40).extension is None
    assert User("7", "A", "20\x001").extension is None
    assert User("7", "A", " 201 ").extension == "201"
    assert User("7", "A", "").extension is None


def test_an_entry_whose_id_cannot_be_stored_is_left_out_alone() -> None:
    directory = Directory(
        users=(User("1", "Anna", "201"), User("2\x00", "Bernd", "202"), User("x" * 65, "C", None)),
        groups=(Group("5", "Brandschutz", member_ids=("1", "2\x00")), Group("", "Leer")),
    )
    assert [u.id for u in directory.users] == ["1"]
    assert [(g.id, g.member_ids) for g in directory.groups] == [("5", ("1",))]


async def test_the_simulator_reports_a_poisoned_directory_cleaned(tmp_path: Path) -> None:
    control = SimControl(tmp_path / "sim.json")
    control.create(HOST, SIM_ADMIN, SIM_PASSWORD)
    member = control.add_user("Max\x00Mustermann", "201")
    control.add_user("L" * 300, "1" * 40, description="Notruf\x1b\x07")
    control.add_group("Alarm\x00", [member], description="Brand\x00schutz\nHaus 2")
    pbx = SimPbx(tmp_path / "sim.json")
    await pbx.login(HOST, SIM_ADMIN, SIM_PASSWORD)
    directory = await pbx.directory()
    assert_storable(directory)
    assert [u.name for u in directory.users] == ["Max\ufffdMustermann", "L" * 200]
    assert [u.extension for u in directory.users] == ["201", None]
    group = directory.groups[0]
    assert (group.name, group.description) == ("Alarm\ufffd", "Brand\ufffdschutz Haus 2")
    assert group.member_ids == (member,)


async def test_the_swyx_adapter_cleans_its_answers_and_skips_only_a_broken_entry() -> None:
    fake = FakeSwyx.seeded()
    fake.users.append(
        {"UserID": "30", "Name": "Null\x00Byte", "Comment": "\ud83d", "InternalNumbers": ["230"]}
    )
    fake.users.append({"Name": "ohne Id", "Comment": "", "InternalNumbers": ["231"]})
    fake.groups.append({"GroupID": "9", "Name": "G" * 250, "Description": "a\x00", "Members": []})
    swyx = SwyxPbx(fake, agent_dir=r"C:\ProgramData\Rundruf\agents")
    await swyx.login(SERVER, ADMIN, PASSWORD)
    directory = await swyx.directory()
    assert_storable(directory)
    users = {u.id: u for u in directory.users}
    assert set(users) == {"17", "18", "19", "20", "30"}  # the one without an id is left out
    assert (users["30"].name, users["30"].description) == ("Null\ufffdByte", "\ufffd")
    groups = {g.id: g for g in directory.groups}
    assert (groups["9"].name, groups["9"].description) == ("G" * 200, "a\ufffd")


def test_bidi_controls_and_invisible_characters_are_replaced() -> None:
    # As api/domain/validation.py refuses them: a name that reads otherwise than written.
    name = "Anna\u202eBerger\u2066x\u2069\u200b\u200d\ufeff"
    assert User("7", name, None).name == "Anna\ufffdBerger\ufffdx\ufffd\ufffd\ufffd\ufffd"
    assert User("7", "Jürgen\u00adGroß", None).name == "Jürgen\u00adGroß"  # soft hyphen stays


def test_a_number_with_a_letter_is_no_number() -> None:
    # "12a4" dialled would be someone else's number (or none): left out, never patched.
    assert User("7", "A", "12a4").extension is None
    assert User("7", "A", "+49 89 123-45 x2").extension is None
    assert User("7", "A", "*31#").extension == "*31#"


def test_visual_separators_in_a_number_are_dropped_so_the_member_is_still_called() -> None:
    # People type numbers as they read them; the PBX dials the digits (review B).
    assert User("7", "A", "12 34").extension == "1234"
    assert User("7", "A", "+49 89 123-456").extension == "+4989123456"
    assert User("7", "A", "(089)\u00a0123/45.6").extension == "089123456"
    assert User("7", "A", "0711\u202f12").extension == "071112"
    # A '+' only leads the number; separators alone are no number.
    assert User("7", "A", "12+34").extension is None
    assert User("7", "A", "+").extension is None
    assert User("7", "A", " - ").extension is None
    assert User("7", "A", "12\x1c34").extension is None  # a control is no separator
    # The server's mirror applies the same rule again to what the agent sent: unchanged.
    assert text.extension(text.extension("+49 89 123-456")) == "+4989123456"


def test_of_two_entries_with_one_id_the_first_is_kept_and_the_directory_is_partial() -> None:
    directory = Directory(
        users=(User("1", "Anna", "201"), User("2", "Bernd", "202"), User("1", "Jemand", "666")),
        groups=(Group("5", "Alarm", member_ids=("1",)), Group("5", "Zweite")),
    )
    assert [(u.id, u.extension) for u in directory.users] == [("1", "201"), ("2", "202")]
    assert [g.name for g in directory.groups] == ["Alarm"]
    assert directory.partial
    assert directory_json(directory)["partial"] is True
    whole = Directory(users=(User("1", "Anna", "201"),), groups=())
    assert not whole.partial and "partial" not in directory_json(whole)


async def test_the_simulator_stores_a_lone_surrogate_as_a_replacement(tmp_path: Path) -> None:
    control = SimControl(tmp_path / "sim.json")
    control.create(HOST, SIM_ADMIN, SIM_PASSWORD)
    control.add_user("Max\ud800Muster", "201")
    pbx = SimPbx(tmp_path / "sim.json")
    await pbx.login(HOST, SIM_ADMIN, SIM_PASSWORD)
    assert [u.name for u in (await pbx.directory()).users] == ["Max\ufffdMuster"]
