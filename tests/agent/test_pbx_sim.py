"""The SwyxWare simulator: the `Pbx` contract, then what only the simulator does.

Cross-process cases start real Python processes driving `SimControl`, as the
demo does while the agent runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from edge_agent.pbx.errors import (
    PbxConflict,
    PbxError,
    PbxLoginRefused,
    PbxNotFound,
    PbxNotLoggedIn,
    PbxRefused,
    PbxUnreachable,
)
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimControl, SimPbx
from tests.agent.pbx_contract import SEED_GROUP, SEED_USERS, PbxContract, group_named, user_named

HOST, ADMIN, PASSWORD = "swyx.local", "admin", "geheim"
CONTROL_PRELUDE = """\
import sys
from pathlib import Path
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimControl
control = SimControl(Path(sys.argv[1]))
"""


def control_command(state_path: Path, code: str) -> list[str]:
    """A Python command line that runs `code` with `control` bound to the simulator."""
    return [sys.executable, "-c", CONTROL_PRELUDE + textwrap.dedent(code), str(state_path)]


@pytest.fixture
def control(tmp_path: Path) -> SimControl:
    control = SimControl(tmp_path / "swyx.json")
    control.create(HOST, ADMIN, PASSWORD)
    ids = {name: control.add_user(name, extension) for name, extension in SEED_USERS}
    group_name, members = SEED_GROUP
    control.add_group(group_name, [ids[m] for m in members])
    return control


@pytest.fixture
async def sim(control: SimControl) -> SimPbx:
    pbx = SimPbx(control.state_path)
    await pbx.login(HOST, ADMIN, PASSWORD)
    return pbx


class TestSimPbxContract(PbxContract):
    @pytest.fixture
    async def pbx(self, sim: SimPbx) -> SimPbx:
        return sim


# --- login, faults and sessions ---------------------------------------------


async def test_the_state_survives_a_restart(control: SimControl, sim: SimPbx) -> None:
    dora = await sim.create_user("Dora Engel", "Lager", extension="251")

    restarted = SimPbx(control.state_path)
    with pytest.raises(PbxNotLoggedIn):
        await restarted.directory()
    await restarted.login(HOST, ADMIN, PASSWORD)

    assert user_named(await restarted.directory(), "Dora Engel") == dora


async def test_it_rejects_a_wrong_password(control: SimControl) -> None:
    pbx = SimPbx(control.state_path)

    with pytest.raises(PbxLoginRefused) as refused:
        await pbx.login(HOST, ADMIN, "falsch")

    assert refused.value.message == "Login failed for 'admin': wrong user name or password"
    assert refused.value.permanent
    with pytest.raises(PbxLoginRefused):
        await pbx.login(HOST, "root", PASSWORD)
    with pytest.raises(PbxNotLoggedIn):
        await pbx.directory()


async def test_it_refuses_the_login_when_the_fault_is_set(control: SimControl) -> None:
    pbx = SimPbx(control.state_path)
    control.set_fault(refuse_login=True)

    with pytest.raises(PbxLoginRefused):
        await pbx.login(HOST, ADMIN, PASSWORD)

    control.set_fault(refuse_login=False)
    await pbx.login(HOST, "Admin", PASSWORD)  # Windows account names ignore case
    assert len((await pbx.directory()).users) == 3


async def test_a_failed_login_ends_the_previous_one(control: SimControl, sim: SimPbx) -> None:
    with pytest.raises(PbxLoginRefused):
        await sim.login(HOST, ADMIN, "falsch")

    with pytest.raises(PbxNotLoggedIn):
        await sim.directory()


async def test_it_is_unreachable_when_the_fault_is_set(control: SimControl, sim: SimPbx) -> None:
    control.set_fault(unreachable=True)

    assert not await sim.reachable()
    with pytest.raises(PbxUnreachable) as unreachable:
        await sim.directory()
    assert unreachable.value.message == "The server 'swyx.local' is not reachable"
    assert not unreachable.value.permanent
    with pytest.raises(PbxUnreachable):
        await sim.create_user("Dora Engel", "")
    with pytest.raises(PbxUnreachable):
        await SimPbx(control.state_path).login(HOST, ADMIN, PASSWORD)

    control.clear_faults()
    assert await sim.reachable()
    assert "Dora Engel" not in {u.name for u in (await sim.directory()).users}


async def test_another_host_name_is_unreachable(control: SimControl) -> None:
    with pytest.raises(PbxUnreachable) as unreachable:
        await SimPbx(control.state_path).login("pbx.example", ADMIN, PASSWORD)

    assert unreachable.value.message == "The server 'pbx.example' is not reachable"


async def test_a_missing_state_file_is_an_unreachable_server(tmp_path: Path) -> None:
    pbx = SimPbx(tmp_path / "nothing.json")

    assert not await pbx.reachable()
    with pytest.raises(PbxUnreachable):
        await pbx.login(HOST, ADMIN, PASSWORD)


async def test_a_damaged_state_file_is_a_permanent_error(control: SimControl) -> None:
    control.state_path.write_text('{"format": 1, "host": ')
    pbx = SimPbx(control.state_path)

    assert not await pbx.reachable()
    with pytest.raises(PbxError) as damaged:
        await pbx.login(HOST, ADMIN, PASSWORD)
    assert damaged.value.permanent
    assert "damaged" in damaged.value.message


async def test_the_delay_fault_slows_every_answer(control: SimControl, sim: SimPbx) -> None:
    control.set_fault(delay_seconds=0.2)

    started = time.monotonic()
    await sim.directory()
    await SimPbx(control.state_path).login(HOST, ADMIN, PASSWORD)
    elapsed = time.monotonic() - started

    assert elapsed >= 0.4
    control.set_fault(delay_seconds=0)
    started = time.monotonic()
    await sim.directory()
    assert time.monotonic() - started < 0.2


OPERATIONS: dict[str, Callable[[SimPbx], Awaitable[object]]] = {
    "directory": lambda p: p.directory(),
    "create_user": lambda p: p.create_user("Dora Engel", ""),
    "update_user": lambda p: p.update_user("1001", description="x"),
    "delete_user": lambda p: p.delete_user("1001"),
    "create_group": lambda p: p.create_group("Ersthelfer", ""),
    "add_group_members": lambda p: p.add_group_members("1004", ["1003"]),
    "remove_group_members": lambda p: p.remove_group_members("1004", ["1001"]),
    "next_free_extension": lambda p: p.next_free_extension(),
    "set_agent_pin": lambda p: p.set_agent_pin("1001", "1234"),
}


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_it_rejects_operations_before_login(control: SimControl, operation: str) -> None:
    before = control.state_path.read_bytes()

    with pytest.raises(PbxNotLoggedIn):
        await OPERATIONS[operation](SimPbx(control.state_path))

    assert control.state_path.read_bytes() == before


# --- SwyxWare's refusals, word for word ---------------------------------------


async def test_it_names_the_owner_of_a_taken_extension(sim: SimPbx) -> None:
    with pytest.raises(PbxConflict) as conflict:
        await sim.create_user("Dora Engel", "", extension="201")

    assert conflict.value.message == (
        "The internal number 201 is already assigned to user 'Anna Berger'"
    )


async def test_it_compares_names_without_case(sim: SimPbx) -> None:
    with pytest.raises(PbxConflict) as user_conflict:
        await sim.create_user("anna berger ", "")
    with pytest.raises(PbxConflict) as group_conflict:
        await sim.create_group("BRANDSCHUTZ", "")

    assert user_conflict.value.message == "A user with the name 'Anna Berger' already exists"
    assert group_conflict.value.message == "A group with the name 'Brandschutz' already exists"


async def test_it_says_which_id_is_unknown(sim: SimPbx) -> None:
    with pytest.raises(PbxNotFound) as user_missing:
        await sim.delete_user("4711")
    with pytest.raises(PbxNotFound) as group_missing:
        await sim.add_group_members("4711", [])

    assert user_missing.value.message == "The user with id 4711 does not exist"
    assert group_missing.value.message == "The group with id 4711 does not exist"


async def test_it_takes_the_lowest_free_extension(sim: SimPbx) -> None:
    assert await sim.next_free_extension() == "200"
    await sim.create_user("Dora Engel", "")

    assert await sim.next_free_extension() == "204"


async def test_it_refuses_when_the_range_is_full(tmp_path: Path) -> None:
    control = SimControl(tmp_path / "small.json")
    control.create(HOST, ADMIN, PASSWORD, first_extension=200, last_extension=201)
    control.add_user("Anna Berger")
    control.add_user("Bernd Clausen")
    pbx = SimPbx(control.state_path)
    await pbx.login(HOST, ADMIN, PASSWORD)

    with pytest.raises(PbxRefused) as full:
        await pbx.create_user("Carla Dietz", "")

    assert full.value.message == "No internal number is free in the range 200-201"
    assert (await pbx.create_user("Carla Dietz", "", extension="950")).extension == "950"


async def test_it_stores_the_agent_pin(control: SimControl, sim: SimPbx) -> None:
    agent = await sim.create_user("Rundruf Agent", "Rundruf", callrouting_only=True)

    await sim.set_agent_pin(agent.id, "482913")
    with pytest.raises(PbxRefused):
        await sim.set_agent_pin(agent.id, "48a913")

    assert control.pin_of(agent.id) == "482913"
    assert control.pin_of(user_named(control.snapshot(), "Anna Berger").id) is None


async def test_it_refuses_a_non_member_in_a_batch_without_adding_any(sim: SimPbx) -> None:
    group = group_named(await sim.directory(), "Brandschutz")
    carla = user_named(await sim.directory(), "Carla Dietz")

    with pytest.raises(PbxNotFound):
        await sim.add_group_members(group.id, [carla.id, "4711"])

    assert group_named(await sim.directory(), "Brandschutz") == group


async def test_concurrent_calls_get_different_extensions(sim: SimPbx) -> None:
    users = await asyncio.gather(*(sim.create_user(f"Neu {i}", "") for i in range(20)))

    extensions = {u.extension for u in (await sim.directory()).users}
    assert len({u.extension for u in users}) == 20
    assert len(extensions) == 23


# --- the control surface ------------------------------------------------------


def test_create_refuses_an_existing_state_unless_asked(control: SimControl) -> None:
    with pytest.raises(FileExistsError):
        control.create()

    assert control.create(exist_ok=True) is False
    assert len(control.snapshot().users) == 3


def test_the_state_file_is_private(control: SimControl) -> None:
    # It holds the admin password and the agent PINs.
    assert stat.S_IMODE(control.state_path.stat().st_mode) == 0o600


def test_set_state_finds_users_by_id_or_name(control: SimControl) -> None:
    anna = user_named(control.snapshot(), "Anna Berger")

    control.set_state(anna.id, UserState.AWAY)
    control.set_state("bernd clausen", UserState.DO_NOT_DISTURB)

    directory = control.snapshot()
    assert user_named(directory, "Anna Berger").state is UserState.AWAY
    assert user_named(directory, "Bernd Clausen").state is UserState.DO_NOT_DISTURB
    with pytest.raises(PbxNotFound):
        control.set_state("Niemand", UserState.AWAY)


def test_set_fault_changes_only_the_faults_given(control: SimControl) -> None:
    control.set_fault(unreachable=True, delay_seconds=1.5)
    faults = control.set_fault(refuse_login=True)

    assert (faults.unreachable, faults.refuse_login, faults.delay_seconds) == (True, True, 1.5)
    with pytest.raises(ValueError):
        control.set_fault(delay_seconds=-1)
    control.clear_faults()
    assert control.faults() == type(faults)()


def test_seed_demo_builds_a_small_company(tmp_path: Path) -> None:
    control = SimControl(tmp_path / "demo.json")
    control.create()

    directory = control.seed_demo(n_members=20)

    users = {u.id: u for u in directory.users}
    extensions = [u.extension or "" for u in directory.users]
    assert len(set(extensions)) == len(extensions)
    assert all(e.isdigit() and int(e) >= 200 for e in extensions)
    assert len({u.name for u in directory.users}) == len(directory.users)
    assert "ü" in "".join(u.name for u in directory.users)
    assert len(group_named(directory, "Brandschutzhelfer").member_ids) == 20
    for name in ("Empfang", "Technik", "Ersthelfer"):
        assert group_named(directory, name).member_ids
    assert all(m in users for g in directory.groups for m in g.member_ids)
    assert len({u.state for u in directory.users}) >= 5
    assert control.snapshot() == directory


def test_seed_demo_twice_changes_nothing(tmp_path: Path) -> None:
    control = SimControl(tmp_path / "demo.json")
    control.create()
    first = control.seed_demo(n_members=5)

    with pytest.raises(PbxConflict):
        control.seed_demo(n_members=5)

    assert control.snapshot() == first


def test_a_failed_write_leaves_the_old_state(
    control: SimControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = control.state_path.read_bytes()

    def crash(*args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        control.add_user("Dora Engel")
    monkeypatch.undo()

    assert control.state_path.read_bytes() == before
    assert list(control.state_path.parent.glob("*.tmp")) == []


# --- across processes ---------------------------------------------------------


async def test_it_sees_states_another_process_sets(control: SimControl, sim: SimPbx) -> None:
    process = await asyncio.create_subprocess_exec(
        *control_command(
            control.state_path,
            """
            control.set_state("Anna Berger", UserState.SPEAKING_EXTERNAL)
            control.set_fault(delay_seconds=0.05)
            """,
        )
    )
    assert await process.wait() == 0

    directory = await sim.directory()
    assert user_named(directory, "Anna Berger").state is UserState.SPEAKING_EXTERNAL
    assert control.faults().delay_seconds == 0.05


def test_concurrent_writers_lose_no_update(control: SimControl, tmp_path: Path) -> None:
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            control_command(
                control.state_path,
                f"""
                import time
                # Start together, so that the writers really overlap.
                Path({str(tmp_path)!r}, "ready-{n}").touch()
                deadline = time.monotonic() + 10
                while not Path({str(go)!r}).exists() and time.monotonic() < deadline:
                    time.sleep(0.001)
                for i in range(20):
                    control.add_user(f"Prozess {n} Nutzer {{i}}")
                """,
            )
        )
        for n in range(2)
    ]
    while len(list(tmp_path.glob("ready-*"))) < len(writers):
        assert all(w.poll() is None for w in writers), "a writer died before it started"
        time.sleep(0.001)
    go.touch()
    reads = 0
    while any(w.poll() is None for w in writers):
        # A reader between the writers must always find a whole state.
        json.loads(control.state_path.read_text(encoding="utf-8"))
        reads += 1

    assert [w.wait() for w in writers] == [0, 0]
    directory = control.snapshot()
    names = {u.name for u in directory.users}
    assert {f"Prozess {n} Nutzer {i}" for n in range(2) for i in range(20)} <= names
    assert len(directory.users) == 43
    assert len({u.extension for u in directory.users}) == 43
    assert len({u.id for u in directory.users}) == 43
    assert reads > 0
    assert list(control.state_path.parent.glob("*.tmp")) == []
