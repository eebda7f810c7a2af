"""The Swyx adapter against a fake PowerShell runner: the `Pbx` contract, then the
scripts it sends, injection attempts, refusals and how they map to errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from edge_agent import platforms
from edge_agent.pbx.errors import (
    PbxError,
    PbxLoginRefused,
    PbxNotFound,
    PbxNotLoggedIn,
    PbxRefused,
    PbxUnreachable,
)
from edge_agent.pbx.port import UserState
from edge_agent.pbx.swyx import AGENT_TAG, SwyxPbx, parse_answer
from edge_agent.pbx.swyx_runner import BOOTSTRAP, LocalPowerShell, encoded_command, local_command
from edge_agent.pbx.swyx_scripts import CMDLETS, SCRIPTS, script_name
from edge_agent.pbx.text import NAME_MAX, clean
from tests.agent.pbx_contract import PbxContract, group_named, user_named
from tests.agent.swyx_fake import ADMIN, FIXTURES, PASSWORD, SERVER, FakeSwyx, fixture

AGENT_DIR = r"C:\ProgramData\Rundruf\agents"
EVIL = [
    "O'Brien; Remove-Item C:\\ -Recurse",
    '"; Stop-Computer; "',
    "$(Stop-Computer)",
    "`$env:PATH @(1) | Out-File x",
    "Zeile\r\nzwei",
    "'@\n Remove-Item *\n@'",
    "Ünïcödé ☎ \u202e",
]


T = TypeVar("T")


async def longest_pause(awaitable: Awaitable[T], every: float = 0.005) -> tuple[T, float]:
    """Awaits `awaitable` while a timer asks to run every `every` seconds, as the audio
    pacer does; returns its result and how much later than asked the timer ran at worst."""
    loop = asyncio.get_running_loop()
    worst, last, done = 0.0, loop.time(), False

    async def tick() -> None:
        nonlocal worst, last
        while not done:
            await asyncio.sleep(every)
            now = loop.time()
            worst, last = max(worst, now - last - every), now

    ticker = asyncio.create_task(tick())
    try:
        return await awaitable, worst
    finally:
        done = True
        await ticker


@pytest.fixture
def fake() -> FakeSwyx:
    return FakeSwyx.seeded()


@pytest.fixture
async def swyx(fake: FakeSwyx) -> SwyxPbx:
    pbx = SwyxPbx(fake, agent_dir=AGENT_DIR)
    await pbx.login(SERVER, ADMIN, PASSWORD)
    return pbx


class TestSwyxPbxContract(PbxContract):
    @pytest.fixture
    async def pbx(self, swyx: SwyxPbx) -> SwyxPbx:
        return swyx


# --- the scripts ----------------------------------------------------------------


def test_every_script_answers_in_json_and_takes_values_only_as_data() -> None:
    for name, text in SCRIPTS.items():
        assert script_name(text) == name
        assert text.startswith(f"# rundruf-script: {name}\nparam([string]$ParamsJson)")
        assert "$P = $ParamsJson | ConvertFrom-Json" in text
        assert "ConvertTo-Json" in text
        # No script builds code from text at run time.
        for risky in ("Invoke-Expression", "iex ", "[ScriptBlock]::Create", "-Command", "& $"):
            assert risky not in text, (name, risky)


def test_the_scripts_use_only_the_cmdlets_listed_and_documented() -> None:
    used = {m for text in SCRIPTS.values() for m in re.findall(r"\b[A-Z][a-z]+-IpPbx\w*", text)}
    assert used == set(CMDLETS)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "swyx.md").read_text(encoding="utf-8")
    for cmdlet in CMDLETS:
        assert f"`{cmdlet}`" in docs, cmdlet


def powershell_syntax_errors(text: str) -> list[str]:
    """Where tree-sitter's PowerShell grammar finds a syntax error in `text` (we have no
    PowerShell to parse it: docs/swyx.md)."""
    import tree_sitter_powershell
    from tree_sitter import Language, Node, Parser

    found: list[str] = []

    def walk(node: Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            line = text.splitlines()[node.start_point[0]]
            found.append(f"line {node.start_point[0] + 1}: {line.strip()}")
        for child in node.children:
            walk(child)

    walk(Parser(Language(tree_sitter_powershell.language())).parse(text.encode()).root_node)
    return found


@pytest.mark.parametrize("name", [*SCRIPTS, "bootstrap"])
def test_every_script_parses_as_powershell(name: str) -> None:
    text = BOOTSTRAP if name == "bootstrap" else SCRIPTS[name]

    assert powershell_syntax_errors(text) == []


def test_the_grammar_check_finds_a_syntax_error() -> None:
    broken = SCRIPTS["create_group"].replace("} catch { $problem", "} catch { ($problem")

    assert powershell_syntax_errors(broken)


def test_a_script_with_anything_added_is_not_one_of_the_scripts() -> None:
    text = SCRIPTS["directory"]
    assert script_name(text + "Remove-Item x") is None
    assert script_name(text.replace("Get-IpPbxUser", "Get-IpPbxUser; Stop-Computer")) is None


async def test_it_sends_each_value_in_the_parameter_block(fake: FakeSwyx, swyx: SwyxPbx) -> None:
    await swyx.create_user("Dora Engel", "Lager", extension="251")

    call = fake.calls[-1]
    assert call.name == "create_user"
    assert call.script == SCRIPTS["create_user"]
    assert call.params == {
        "name": "Dora Engel",
        "comment": "Lager",
        "number": "251",
        "from": 200,
        "server": SERVER,
        "tag": AGENT_TAG,
        "agentDir": AGENT_DIR,
    }


@pytest.mark.parametrize("evil", EVIL)
async def test_injection_attempts_stay_data_in_every_string_argument(
    fake: FakeSwyx, swyx: SwyxPbx, evil: str
) -> None:
    user = await swyx.create_user(evil, evil, callrouting_only=True)
    group = await swyx.create_group(evil + " G", evil)
    await swyx.update_user(user.id, description=evil + " 2")
    await swyx.add_group_members(group.id, [user.id])
    await swyx.set_agent_pin(user.id, "1234")
    await swyx.enable_user_login(user.id, evil, evil)
    await swyx.remove_group_members(group.id, [user.id])
    with pytest.raises(PbxNotFound):
        await swyx.delete_user(evil)
    with pytest.raises(PbxNotFound):
        await swyx.add_group_members(evil, [user.id])

    with pytest.raises(PbxNotFound):
        await swyx.remove_group_members(group.id, [evil])
    other = FakeSwyx.seeded()
    with pytest.raises(PbxUnreachable):
        await SwyxPbx(other).login(evil, evil, evil)
    assert other.calls[0].params["server"] == evil

    for call in fake.calls + other.calls:
        assert call.script == SCRIPTS[call.name]  # the value never reached the script text
    directory = await swyx.directory()
    # What comes back is the PBX's text as cleaned for the mirror (line breaks: spaces).
    shown = clean(evil, NAME_MAX)
    stored = user_named(directory, shown)
    assert (stored.description, stored.callrouting_only) == (clean(evil + " 2", NAME_MAX), True)
    assert group_named(directory, clean(evil + " G", NAME_MAX)).description == shown
    assert fake.logins[-1] == (user.id, evil, evil)
    assert any(evil in c.params.values() for c in fake.calls if c.name == "create_user")


# --- users and groups are acted on by the id that was looked up ----------------------


def test_no_script_hands_a_cmdlet_a_name_after_looking_up_an_id() -> None:
    # Only the cmdlets that make a new entry get a name; everything else gets the entry.
    for name, text in SCRIPTS.items():
        for line in text.splitlines():
            if re.search(r"-(User|Group)Name\b", line):
                assert re.match(r"\s*\$?\w*\s*=?\s*New-IpPbx(User|Group) ", line), (name, line)


def namesakes(fake: FakeSwyx) -> None:
    fake.users += [
        {"UserID": "40", "Name": "Max Muster", "Comment": "", "InternalNumbers": ["240"]},
        {"UserID": "41", "Name": "max muster", "Comment": "", "InternalNumbers": ["241"]},
    ]


async def test_a_login_goes_to_the_looked_up_user_not_to_a_namesake(
    fake: FakeSwyx, swyx: SwyxPbx
) -> None:
    namesakes(fake)

    await swyx.enable_user_login("41", "mmuster", "pw")

    assert fake.logins == [("41", "mmuster", "pw")]


async def test_a_new_number_replaces_only_the_looked_up_users_number(
    fake: FakeSwyx, swyx: SwyxPbx
) -> None:
    namesakes(fake)

    changed = await swyx.update_user("41", extension="250")

    assert changed.extension == "250"
    numbers = {u.id: u.extension for u in (await swyx.directory()).users}
    assert (numbers["40"], numbers["41"]) == ("240", "250")


@pytest.mark.parametrize(
    ("name", "other"),
    [("Lager*", "Lager Nord"), ("[Test] Eins", "T Eins"), ("Platz ?", "Platz 1")],
)
async def test_a_name_with_wildcards_hits_only_its_own_user(
    fake: FakeSwyx, swyx: SwyxPbx, name: str, other: str
) -> None:
    fake.users.append({"UserID": "50", "Name": other, "Comment": "", "InternalNumbers": ["250"]})

    created = await swyx.create_user(name, "", extension="251")
    await swyx.enable_user_login(created.id, "login", "pw")
    moved = await swyx.update_user(created.id, extension="252")

    assert (created.name, created.extension, moved.extension) == (name, "251", "252")
    assert fake.logins == [(created.id, "login", "pw")]
    numbers = {u.id: u.extension for u in (await swyx.directory()).users}
    assert (numbers[created.id], numbers["50"]) == ("252", "250")


async def test_a_group_named_like_a_pattern_is_the_group_just_made(
    fake: FakeSwyx, swyx: SwyxPbx
) -> None:
    fake.groups.append({"GroupID": "60", "Name": "Lager Nord", "Description": "", "Members": []})

    group = await swyx.create_group("Lager*", "alle Lager")

    assert group.id != "60"
    assert (group.name, group.description) == ("Lager*", "alle Lager")


def test_a_group_is_made_in_the_public_form_and_described_afterwards() -> None:
    text = SCRIPTS["create_group"]

    made = text.index("New-IpPbxGroup -GroupName $name | Add-IpPbxGroup | Out-Null")
    assert text.index("Update-IpPbxGroup -GroupEntry $group") > made
    assert "-Comment" not in next(line for line in text.splitlines() if "New-IpPbxGroup" in line)


async def test_a_group_whose_description_cannot_be_stored_is_made_anyway(
    fake: FakeSwyx, swyx: SwyxPbx, caplog: pytest.LogCaptureFixture
) -> None:
    fake.group_description_fails = True

    with caplog.at_level(logging.WARNING, logger="edge_agent.pbx.swyx"):
        group = await swyx.create_group("Lager", "alle Lager")

    assert (group.name, group.description) == ("Lager", "")
    assert group_named(await swyx.directory(), "Lager").id == group.id
    assert "created without its description" in caplog.text
    assert "Update-IpPbxGroup" in caplog.text


async def test_login_credentials_go_to_the_runner_not_into_a_script(fake: FakeSwyx) -> None:
    pbx = SwyxPbx(fake)

    await pbx.login(SERVER, ADMIN, PASSWORD)

    assert (fake.user, fake.password) == (ADMIN, PASSWORD)
    assert PASSWORD not in json.dumps([c.params for c in fake.calls])


async def test_it_hides_the_agent_tag_and_marks_agents(fake: FakeSwyx, swyx: SwyxPbx) -> None:
    agent = await swyx.create_user("Rundruf Brandschutz", "Rundruf-Agent", callrouting_only=True)

    assert fake.users[-1]["Comment"] == f"Rundruf-Agent {AGENT_TAG}"
    assert (agent.description, agent.callrouting_only) == ("Rundruf-Agent", True)
    moved = await swyx.update_user(agent.id, extension="7702", description="neu")
    assert (moved.description, moved.callrouting_only, moved.extension) == ("neu", True, "7702")


async def test_the_agent_file_carries_pin_number_and_name(fake: FakeSwyx, swyx: SwyxPbx) -> None:
    agent = await swyx.create_user("Rundruf Brandschutz", "", "7701", callrouting_only=True)

    await swyx.set_agent_pin(agent.id, "482913")
    await swyx.update_user(agent.id, extension="7702")

    path = AGENT_DIR + f"\\rundruf_agent_{agent.id}.txt"
    name_hex = b"Rundruf Brandschutz".hex()
    assert fake.files[path] == f"pin=482913\nnumber=7702\nname={name_hex}\n"
    await swyx.delete_user(agent.id)
    assert path not in fake.files


async def test_users_have_no_state_without_a_state_reader(swyx: SwyxPbx) -> None:
    directory = await swyx.directory()

    assert {u.state for u in directory.users} == {UserState.UNAVAILABLE}
    assert user_named(directory, "Fax Zentrale").extension is None


async def test_states_come_from_the_state_reader_for_group_members(fake: FakeSwyx) -> None:
    asked = []

    async def states(groups):
        asked.append(sorted(g.name for g in groups))
        return {"17": UserState.SPEAKING_EXTERNAL, "18": UserState.LOGGED_ON}

    pbx = SwyxPbx(fake, states=states)
    await pbx.login(SERVER, ADMIN, PASSWORD)
    directory = await pbx.directory()

    assert user_named(directory, "Anna Berger").state is UserState.SPEAKING_EXTERNAL
    assert user_named(directory, "Bernd Clausen").state is UserState.LOGGED_ON
    assert user_named(directory, "Carla Dietz").state is UserState.UNAVAILABLE
    assert asked == [["Brandschutz", "Leer"]]


async def test_a_failing_state_reader_leaves_the_directory_usable(fake: FakeSwyx) -> None:
    async def states(groups):
        raise OSError("COM: class not registered")

    pbx = SwyxPbx(fake, states=states)
    await pbx.login(SERVER, ADMIN, PASSWORD)

    assert len((await pbx.directory()).users) == 4


# --- refusals and failures ----------------------------------------------------------


async def test_a_wrong_password_is_a_refused_login(fake: FakeSwyx) -> None:
    pbx = SwyxPbx(fake)

    with pytest.raises(PbxLoginRefused) as refused:
        await pbx.login(SERVER, ADMIN, "falsch")

    assert refused.value.permanent
    assert "Access is denied" in refused.value.message
    with pytest.raises(PbxNotLoggedIn):
        await pbx.directory()


async def test_another_server_is_unreachable(fake: FakeSwyx) -> None:
    with pytest.raises(PbxUnreachable) as unreachable:
        await SwyxPbx(fake).login("swyx02", ADMIN, PASSWORD)

    assert not unreachable.value.permanent
    assert "RPC server is unavailable" in unreachable.value.message


async def test_a_failed_login_ends_the_previous_one(fake: FakeSwyx, swyx: SwyxPbx) -> None:
    with pytest.raises(PbxLoginRefused):
        await swyx.login(SERVER, ADMIN, "falsch")

    with pytest.raises(PbxNotLoggedIn):
        await swyx.directory()


async def test_a_host_that_cannot_be_reached_is_unreachable(fake: FakeSwyx, swyx: SwyxPbx) -> None:
    fake.unreachable = True

    assert not await swyx.reachable()
    with pytest.raises(PbxUnreachable):
        await swyx.directory()
    fake.unreachable = False
    assert await swyx.reachable()


async def test_it_is_not_reachable_before_a_login(fake: FakeSwyx) -> None:
    assert not await SwyxPbx(fake).reachable()
    assert fake.calls == []


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        ("refusal_connect_access_denied.json", PbxLoginRefused, "not a SwyxWare administrator"),
        ("refusal_connect_unavailable.json", PbxUnreachable, "RPC server is unavailable"),
        ("refusal_module_missing.json", PbxError, "SwyxWare's administration installed"),
        ("refusal_cmdlet_error.json", PbxRefused, "Remove-IpPbxUser"),
    ],
)
async def test_recorded_refusals_map_to_errors(
    fake: FakeSwyx, swyx: SwyxPbx, answer: str, error: type[PbxError], words: str
) -> None:
    fake.answer = (FIXTURES / answer).read_text(encoding="utf-8")

    with pytest.raises(error) as raised:
        await swyx.delete_user("17")

    assert type(raised.value) is error
    assert words in raised.value.message


@pytest.mark.parametrize(
    "text",
    ["", "WARNING: something\n", "{not json", '{"data": 1}', "[1, 2]", "Fehler: Zugriff"],
)
def test_an_answer_that_is_not_the_scripts_json_is_an_error(text: str) -> None:
    with pytest.raises(PbxError) as raised:
        parse_answer(text, SERVER)

    assert type(raised.value) is PbxError
    assert "no JSON answer" in raised.value.message


def test_the_answer_is_found_among_other_output() -> None:
    assert parse_answer('WARNUNG: alt\n{"ok": true, "data": 7}\n', SERVER) == 7
    assert parse_answer('{"ok": true, "data": 7}\nUserID : 17\n[1]\n', SERVER) == 7


def test_the_scripts_send_cmdlet_output_to_out_null() -> None:
    # Only the script's JSON may reach the output; stray objects would bury it.
    for name, text in SCRIPTS.items():
        joined = re.sub(r"(`|\|)\n\s*", r"\1 ", text).replace("` ", "")
        for line in joined.splitlines():
            words = line.strip()
            mutating = ("Add-IpPbx", "Update-IpPbx", "Remove-IpPbx", "Set-IpPbx", "Connect-IpPbx")
            if words.startswith(mutating) or "| Add-IpPbx" in words:
                assert words.endswith("| Out-Null") or words.endswith("} catch {"), (name, words)


async def test_windows_powershell_51_array_shapes_are_read(fake: FakeSwyx, swyx: SwyxPbx) -> None:
    fake.answer = (FIXTURES / "directory_ps51_arrays.json").read_text(encoding="utf-8")

    directory = await swyx.directory()

    anna = user_named(directory, "Anna Berger")
    agent = user_named(directory, "Rundruf Brandschutz")
    assert (anna.extension, agent.extension, agent.callrouting_only) == ("201", "7701", True)
    assert agent.description == "agenos Rundruf-Agent. Bitte nicht ändern."
    assert group_named(directory, "Brandschutz").member_ids == ("17",)


async def test_a_free_number_that_is_no_number_is_an_error(fake: FakeSwyx, swyx: SwyxPbx) -> None:
    fake.answer = json.dumps({"ok": True, "data": None})

    with pytest.raises(PbxError, match="no free internal number"):
        await swyx.next_free_extension()


async def test_values_are_checked_before_anything_is_sent(fake: FakeSwyx, swyx: SwyxPbx) -> None:
    sent = len(fake.calls)

    with pytest.raises(PbxRefused):
        await swyx.create_user("  ", "")
    with pytest.raises(PbxRefused):
        await swyx.create_group("", "")
    with pytest.raises(PbxRefused):
        await swyx.update_user("17", extension="20; 1")
    with pytest.raises(PbxRefused):
        await swyx.set_agent_pin("17", "12 34")

    assert len(fake.calls) == sent


# --- the local runner -----------------------------------------------------------------

FAKE_POWERSHELL = textwrap.dedent(
    """
    import json, os, sys, time
    # Stands in for powershell.exe: checks the command line, answers from stdin.
    args = sys.argv[1:]
    request = json.loads(sys.stdin.buffer.read().decode("ascii"))
    params = json.loads(request["params"])
    if params.get("mode") == "crash":
        sys.stderr.write("boom")
        sys.exit(3)
    if params.get("pid_file"):
        with open(params["pid_file"], "w") as pid_file:
            pid_file.write(str(os.getpid()))
    if params.get("mode") == "hang":
        time.sleep(30)
    if params.get("mode") == "slow":
        time.sleep(1)
    out = {"ok": True, "data": {"args": args, "script": request["script"], "params": params}}
    sys.stdout.buffer.write(b"\\xef\\xbb\\xbf" + json.dumps(out, ensure_ascii=False).encode())
    """
)


@pytest.fixture
def local(tmp_path: Path) -> LocalPowerShell:
    program = tmp_path / "fake_powershell.py"
    program.write_text(FAKE_POWERSHELL, encoding="utf-8")
    return LocalPowerShell([sys.executable, str(program), *local_command()[1:]])


async def test_the_local_runner_sends_values_on_stdin_not_the_command_line(
    local: LocalPowerShell,
) -> None:
    evil = EVIL[0] + EVIL[6]

    text = await local.run(SCRIPTS["directory"], json.dumps({"name": evil}), seconds=20)

    data = parse_answer(text, SERVER)
    assert data["params"] == {"name": evil}
    assert data["script"] == SCRIPTS["directory"]
    assert data["args"][-2:] == ["-EncodedCommand", encoded_command(BOOTSTRAP)]
    assert all(evil not in arg for arg in data["args"])


async def test_the_local_runner_reports_a_crash_and_a_hang(local: LocalPowerShell) -> None:
    from edge_agent.pbx.swyx_runner import RunnerError

    with pytest.raises(RunnerError) as crashed:
        await local.run(SCRIPTS["login"], json.dumps({"mode": "crash"}), seconds=20)
    assert "code 3: boom" in crashed.value.message
    assert not crashed.value.unreachable
    with pytest.raises(RunnerError) as hung:
        await local.run(SCRIPTS["login"], json.dumps({"mode": "hang"}), seconds=0.5)
    assert hung.value.unreachable


async def test_a_missing_powershell_is_unreachable(tmp_path: Path) -> None:
    pbx = SwyxPbx(LocalPowerShell([str(tmp_path / "no-powershell.exe")]))

    with pytest.raises(PbxUnreachable, match="cannot be started"):
        await pbx.login(SERVER, ADMIN, PASSWORD)


class LoopWithoutSubprocesses(asyncio.SelectorEventLoop):
    """As Windows' selector loop: no asyncio subprocesses (only the Proactor loop has them)."""

    async def _make_subprocess_transport(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def test_the_local_runner_needs_no_asyncio_subprocesses(local: LocalPowerShell) -> None:
    with asyncio.Runner(loop_factory=LoopWithoutSubprocesses) as runner:
        text = runner.run(local.run(SCRIPTS["login"], json.dumps({"n": 1}), seconds=20))

    assert parse_answer(text, SERVER)["params"] == {"n": 1}


async def test_the_event_loop_keeps_its_pace_while_powershell_runs(
    local: LocalPowerShell,
) -> None:
    started = time.monotonic()

    text, late = await longest_pause(
        local.run(SCRIPTS["login"], json.dumps({"mode": "slow"}), seconds=20)
    )

    assert parse_answer(text, SERVER)["params"] == {"mode": "slow"}
    assert time.monotonic() - started >= 1.0  # PowerShell took a second ...
    # ... and the 5 ms timer kept firing: a few ms late here, as when idle; a loop that
    # waited for PowerShell would be a second late (the bound leaves room for a busy CI).
    assert late < 0.1


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def read_pid(path: Path) -> int | None:
    text = path.read_text() if path.exists() else ""
    return int(text) if text else None


async def wait_for_pid(path: Path) -> int:
    for _ in range(500):
        if (pid := read_pid(path)) is not None:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError("the fake PowerShell did not start")


async def test_a_powershell_that_outlives_its_time_is_killed(
    local: LocalPowerShell, tmp_path: Path
) -> None:
    from edge_agent.pbx.swyx_runner import RunnerError

    pid_file = tmp_path / "pid"
    started = time.monotonic()

    with pytest.raises(RunnerError, match=r"no answer within 0\.5 s") as hung:
        await local.run(
            SCRIPTS["login"], json.dumps({"mode": "hang", "pid_file": str(pid_file)}), seconds=0.5
        )

    assert hung.value.unreachable
    assert time.monotonic() - started < 10
    assert process_gone(int(pid_file.read_text()))


async def test_a_cancelled_run_kills_its_powershell(local: LocalPowerShell, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(
        local.run(
            SCRIPTS["login"], json.dumps({"mode": "hang", "pid_file": str(pid_file)}), seconds=60
        )
    )
    pid = await wait_for_pid(pid_file)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    for _ in range(500):
        if process_gone(pid):
            break
        await asyncio.sleep(0.01)
    assert process_gone(pid)


class SlowStart:
    """`subprocess` as the local runner uses it, whose Popen returns half a second after
    the process has started (a loaded host, a virus scanner looking at powershell.exe)."""

    PIPE = subprocess.PIPE
    TimeoutExpired = subprocess.TimeoutExpired

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def Popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(*args, **kwargs)
        self.processes.append(process)
        time.sleep(0.5)
        return process


async def test_a_run_cancelled_while_powershell_starts_kills_it(
    local: LocalPowerShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.pbx import swyx_runner

    slow = SlowStart()
    monkeypatch.setattr(swyx_runner, "subprocess", slow)
    task = asyncio.create_task(
        local.run(SCRIPTS["login"], json.dumps({"mode": "hang"}), seconds=60)
    )
    for _ in range(500):
        if slow.processes:
            break
        await asyncio.sleep(0.01)
    process = slow.processes[0]
    try:
        task.cancel()  # while Popen has not returned yet
        with pytest.raises(asyncio.CancelledError):
            await task

        for _ in range(500):
            if process.poll() is not None:
                break
            await asyncio.sleep(0.01)
        assert process.poll() is not None, "PowerShell runs on after the cancel"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_bootstrap_is_a_fixed_text_decoded_by_powershell() -> None:
    assert "ConvertFrom-Json" in BOOTSTRAP
    assert encoded_command("ä") == "5AA="  # UTF-16LE, as -EncodedCommand expects


def test_fixtures_are_documented() -> None:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    for path in FIXTURES.glob("*.json"):
        assert f"`{path.name}`" in readme, path.name
        fixture(path.name)


# --- states through COM ---------------------------------------------------------------


class ComUser:
    """A PBXUser as pywin32 hands it out: properties, sometimes methods."""

    def __init__(self, user_id: object, state: object, *, as_methods: bool = False) -> None:
        if as_methods:
            self.UserID = lambda: user_id
            self.State = lambda: state
        else:
            self.UserID, self.State = user_id, state


class Broken:
    @property
    def UserID(self) -> str:
        raise OSError("RPC_E_DISCONNECTED")


def test_com_users_map_to_states() -> None:
    from edge_agent.pbx.swyx_com import states_from_users

    users = [ComUser(17, 3), ComUser("18", 7, as_methods=True), ComUser(19, 0), ComUser(20, 8)]
    odd = [ComUser(21, 9), ComUser(22, None), ComUser(None, 2), ComUser(23, True), Broken()]

    assert states_from_users(users + odd) == {
        "17": UserState.SPEAKING_EXTERNAL,
        "18": UserState.DO_NOT_DISTURB,
        "19": UserState.UNAVAILABLE,
        "20": UserState.BUSY,
    }


def test_every_swyx_state_number_has_its_meaning() -> None:
    from edge_agent.pbx.swyx_com import states_from_users

    names = [states_from_users([ComUser(1, n)])["1"].name for n in range(9)]

    assert names == [
        "UNAVAILABLE",
        "LOGGED_OFF",
        "LOGGED_ON",
        "SPEAKING_EXTERNAL",
        "ALERTING",
        "SPEAKING_INTERNAL",
        "AWAY",
        "DO_NOT_DISTURB",
        "BUSY",
    ]


async def test_the_com_reader_asks_pbxconfig_per_group_with_members(fake: FakeSwyx) -> None:
    from edge_agent.pbx.swyx_com import PROG_ID, ComStateReader

    made: list[str] = []
    asked: list[str] = []

    class PbxConfig:
        def GetUserByAddress(self, address: str) -> list[ComUser]:
            asked.append(address)
            return [ComUser(17, 5), ComUser(18, 1)]

    def dispatch(prog_id: str) -> PbxConfig:
        made.append(prog_id)
        return PbxConfig()

    pbx = SwyxPbx(fake, states=ComStateReader(dispatch))
    await pbx.login(SERVER, ADMIN, PASSWORD)
    first = await pbx.directory()
    await pbx.directory()

    assert user_named(first, "Anna Berger").state is UserState.SPEAKING_INTERNAL
    assert user_named(first, "Bernd Clausen").state is UserState.LOGGED_OFF
    assert made == [PROG_ID]  # one COM object, kept
    assert asked == ["Brandschutz", "Brandschutz"]  # the empty group is not asked


async def test_without_pywin32_the_com_reader_leaves_states_unknown(
    fake: FakeSwyx, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.pbx.swyx_com import ComStateReader

    monkeypatch.setitem(sys.modules, "win32com.client", None)
    pbx = SwyxPbx(fake, states=ComStateReader())
    await pbx.login(SERVER, ADMIN, PASSWORD)

    assert {u.state for u in (await pbx.directory()).users} == {UserState.UNAVAILABLE}


class RecordingPbxConfig:
    """A PBXConfig as kb2910 describes it, recording the thread of every call."""

    def __init__(self, threads: list[tuple[str, int]], *, slow: float = 0.0) -> None:
        self.threads, self.slow = threads, slow
        self.initialized_with: list[object] = []
        self.service_user = ComUser(99, 2)

    def Initialize(self, user: object) -> None:
        self.threads.append(("Initialize", threading.get_ident()))
        self.initialized_with.append(user)

    def GetUserByAddress(self, address: str) -> list[ComUser]:
        self.threads.append(("GetUserByAddress", threading.get_ident()))
        time.sleep(self.slow)
        return [self.service_user] if address == "Rundruf" else [ComUser(17, 3)]


def fake_pythoncom(threads: list[tuple[str, int]]) -> types.ModuleType:
    module = types.ModuleType("pythoncom")
    for name in ("CoInitialize", "CoUninitialize"):
        setattr(module, name, lambda name=name: threads.append((name, threading.get_ident())))
    return module


async def test_com_runs_on_its_own_thread_in_its_own_apartment_with_initialize(
    fake: FakeSwyx, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.pbx.swyx_com import PROG_ID, ComStateReader

    threads: list[tuple[str, int]] = []
    config = RecordingPbxConfig(threads)
    monkeypatch.setattr(sys, "platform", "win32")  # the Windows branch: pythoncom's apartment
    monkeypatch.setitem(sys.modules, "pythoncom", fake_pythoncom(threads))

    def dispatch(prog_id: str) -> RecordingPbxConfig:
        threads.append(("Dispatch " + prog_id, threading.get_ident()))
        return config

    reader = ComStateReader(dispatch, initialize_as="Rundruf")
    pbx = SwyxPbx(fake, states=reader)
    await pbx.login(SERVER, ADMIN, PASSWORD)
    await pbx.directory()
    directory = await pbx.directory()
    reader.thread.close()
    assert reader.thread._thread is not None
    reader.thread._thread.join(5)

    assert user_named(directory, "Anna Berger").state is UserState.SPEAKING_EXTERNAL
    assert [name for name, _ in threads] == [
        "CoInitialize",
        "Dispatch " + PROG_ID,
        "GetUserByAddress",  # the PBXUser of "Rundruf" ...
        "Initialize",  # ... initialises PBXConfig, once
        "GetUserByAddress",
        "GetUserByAddress",
        "CoUninitialize",
    ]
    assert config.initialized_with == [config.service_user]
    assert len({ident for _, ident in threads}) == 1
    assert threads[0][1] != threading.get_ident()  # not the event loop's thread


async def test_a_failing_initialize_still_reads_the_states(
    fake: FakeSwyx, caplog: pytest.LogCaptureFixture
) -> None:
    from edge_agent.pbx.swyx_com import ComStateReader

    class Refusing(RecordingPbxConfig):
        def Initialize(self, user: object) -> None:
            raise OSError("-2147352567, 'Exception occurred.'")

    pbx = SwyxPbx(fake, states=ComStateReader(lambda _: Refusing([]), initialize_as="Rundruf"))
    await pbx.login(SERVER, ADMIN, PASSWORD)

    with caplog.at_level(logging.WARNING, logger="edge_agent.pbx.swyx_com"):
        directory = await pbx.directory()

    assert user_named(directory, "Anna Berger").state is UserState.SPEAKING_EXTERNAL
    assert "PBXConfig.Initialize failed" in caplog.text


async def test_the_event_loop_keeps_its_pace_while_com_is_slow(fake: FakeSwyx) -> None:
    from edge_agent.pbx.swyx_com import ComStateReader

    config = RecordingPbxConfig([], slow=0.5)
    pbx = SwyxPbx(fake, states=ComStateReader(lambda _: config))
    await pbx.login(SERVER, ADMIN, PASSWORD)

    directory, late = await longest_pause(pbx.directory())

    assert user_named(directory, "Anna Berger").state is UserState.SPEAKING_EXTERNAL
    assert late < 0.1  # half a second in GetUserByAddress, and the timer kept its pace


# --- PowerShell Remoting (pypsrp, faked) ----------------------------------------------


async def test_remoting_passes_the_parameters_as_a_psrp_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    from edge_agent.pbx.swyx_runner import RemotePowerShell

    seen: dict[str, object] = {}

    class WSMan:
        def __init__(self, host: str, **kwargs: object) -> None:
            seen["host"], seen["wsman"] = host, kwargs

        def __enter__(self) -> WSMan:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    class RunspacePool:
        def __init__(self, wsman: WSMan) -> None:
            pass

        def __enter__(self) -> RunspacePool:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    class PowerShell:
        def __init__(self, pool: RunspacePool) -> None:
            self.streams = types.SimpleNamespace(error=[])

        def add_script(self, script: str) -> PowerShell:
            seen["script"] = script
            return self

        def add_parameter(self, name: str, value: str) -> PowerShell:
            seen["parameter"] = (name, value)
            return self

        def invoke(self) -> list[str]:
            return ['{"ok": true, "data": {"Identity": "FIRMA\\\\swyxadmin"}}']

    monkeypatch.setitem(sys.modules, "pypsrp.wsman", types.SimpleNamespace(WSMan=WSMan))
    monkeypatch.setitem(
        sys.modules,
        "pypsrp.powershell",
        types.SimpleNamespace(RunspacePool=RunspacePool, PowerShell=PowerShell),
    )
    pbx = SwyxPbx(RemotePowerShell(port=5986))

    await pbx.login("swyx01.firma.local", ADMIN, PASSWORD)

    assert seen["host"] == "swyx01.firma.local"
    wsman = seen["wsman"]
    assert isinstance(wsman, dict)
    assert (wsman["username"], wsman["password"], wsman["ssl"]) == (ADMIN, PASSWORD, True)
    assert seen["script"] == SCRIPTS["login"]
    name, value = seen["parameter"]  # type: ignore[misc]
    assert name == "ParamsJson"
    assert json.loads(value)["server"] == "swyx01.firma.local"
    assert PASSWORD not in value


async def test_remoting_without_pypsrp_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edge_agent.pbx.swyx_runner import RemotePowerShell

    monkeypatch.setitem(sys.modules, "pypsrp.wsman", None)

    with pytest.raises(PbxError, match=r"rundruf\[swyx-remote\]"):
        await SwyxPbx(RemotePowerShell()).login(SERVER, ADMIN, PASSWORD)


# --- wiring -----------------------------------------------------------------------------


def test_make_pbx_builds_the_swyx_adapter_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    from edge_agent.pbx import make_pbx
    from edge_agent.pbx.swyx_com import ComStateReader
    from edge_agent.pbx.swyx_runner import RemotePowerShell, windows_logon_check
    from edge_agent.settings import AgentSettings

    local = make_pbx(
        AgentSettings(pbx="swyx", dialer="sip", swyx_powershell=r"C:\PS\powershell.exe")
    )
    monkeypatch.setattr(platforms, "on_windows", lambda: True)
    remote = make_pbx(
        AgentSettings(
            pbx="swyx",
            dialer="sip",
            swyx_transport="winrm",
            sip_password=SecretStr("sip-geheim"),
        )
    )

    assert isinstance(local, SwyxPbx) and isinstance(local.runner, LocalPowerShell)
    assert local.runner.command[0] == r"C:\PS\powershell.exe"
    assert (local.states, local.dialer_login) == (None, None)
    assert isinstance(remote, SwyxPbx) and isinstance(remote.runner, RemotePowerShell)
    assert isinstance(remote.states, ComStateReader)
    assert remote.states.initialize_as == "Rundruf"
    assert remote.dialer_login == ("Rundruf", "sip-geheim")
    assert local.password_check is None
    assert remote.password_check is windows_logon_check


async def test_verifying_credentials_on_swyx_sets_up_the_dialers_login(
    fake: FakeSwyx, tmp_path: Path
) -> None:
    from edge_agent.cache import LocalCache
    from edge_agent.commands import ADMIN_GROUP, SERVICE_USER, Commands

    pbx = SwyxPbx(fake, dialer_login=("Rundruf", "sip-geheim"))
    commands = Commands(pbx, LocalCache(tmp_path / "state"), None)  # type: ignore[arg-type]

    for _ in range(2):
        outcome = await commands.run(
            "verifyPbxCredentials",
            {"host": SERVER, "adminUser": ADMIN},
            {"adminPassword": PASSWORD},
        )
        assert outcome.ok, outcome.error

    directory = await pbx.directory()
    service = user_named(directory, SERVICE_USER)
    assert not service.callrouting_only
    assert group_named(directory, ADMIN_GROUP).member_ids == (service.id,)
    assert fake.logins == [(service.id, "Rundruf", "sip-geheim")] * 2
    assert "sip-geheim" not in json.dumps(outcome.result)


async def test_test_mode_asks_the_dialer_about_members_swyx_cannot_say(
    fake: FakeSwyx, tmp_path: Path
) -> None:
    from edge_agent.broadcast.manager import Broadcasts
    from edge_agent.broadcast.model import Member
    from edge_agent.broadcast.runner import CallSettings
    from edge_agent.cache import LocalCache
    from edge_agent.dialer.sim import SimDialer

    asked: list[dict[str, str]] = []

    class Dialer(SimDialer):
        async def busy_members(self, extensions):
            asked.append(dict(extensions))
            return {key: key == "17" for key in extensions}

    async def states(groups):
        return {"19": UserState.AWAY}

    pbx = SwyxPbx(fake, states=states)
    await pbx.login(SERVER, ADMIN, PASSWORD)
    dialer = Dialer.__new__(Dialer)  # only busy_members is used
    broadcasts = Broadcasts(tmp_path, LocalCache(tmp_path / "c"), pbx, dialer, 1, CallSettings())
    members = [Member(0, "17", "Anna", "201"), Member(1, "19", "Carla", "203")]
    try:
        states = await broadcasts._states(members)
    finally:
        await broadcasts.journal.close()

    assert asked == [{"17": "201"}]  # Carla's state SwyxWare told, Anna's it could not
    assert states["17"] == UserState.BUSY
    assert states["19"] == UserState.AWAY


# --- local PowerShell: the service account, checked against the website's login --------------


@pytest.mark.parametrize(
    ("entered", "same"),
    [
        ("FIRMA\\svc-rundruf", True),
        ("firma\\SVC-Rundruf", True),
        ("svc-rundruf", True),
        ("svc-rundruf@firma.local", True),
        ("ANDERE\\svc-rundruf", False),
        ("svc-rundruf@andere.local", False),
        ("admin", False),
        ("", False),
    ],
)
def test_it_knows_when_a_login_names_the_service_account(entered: str, same: bool) -> None:
    from edge_agent.pbx.swyx_runner import same_account

    assert same_account("FIRMA\\svc-rundruf", entered) is same


async def test_local_powershell_needs_the_service_accounts_name(fake: FakeSwyx) -> None:
    fake.uses_login = False
    pbx = SwyxPbx(fake)

    with pytest.raises(PbxLoginRefused) as refused:
        await pbx.login(SERVER, ADMIN, PASSWORD)

    assert "works on this server as 'FIRMA\\svc-rundruf'" in refused.value.message
    with pytest.raises(PbxNotLoggedIn):
        await pbx.directory()
    await pbx.login(SERVER, "svc-rundruf", "passwort")
    assert len((await pbx.directory()).users) == 4


async def test_local_powershell_checks_the_password_with_windows(fake: FakeSwyx) -> None:
    fake.uses_login = False
    checked: list[tuple[str, str]] = []

    def check(user: str, password: str) -> bool:
        checked.append((user, password))
        return password == "richtig"

    pbx = SwyxPbx(fake, password_check=check)

    with pytest.raises(PbxLoginRefused, match="wrong user name or password"):
        await pbx.login(SERVER, "FIRMA\\svc-rundruf", "falsch")
    with pytest.raises(PbxLoginRefused, match="no password"):
        await pbx.login(SERVER, "FIRMA\\svc-rundruf", "")
    await pbx.login(SERVER, "FIRMA\\svc-rundruf", "richtig")

    assert checked == [("FIRMA\\svc-rundruf", "falsch"), ("FIRMA\\svc-rundruf", "richtig")]


def test_the_windows_logon_check_needs_pywin32(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_agent.pbx.swyx_runner import windows_logon_check

    class Handle:
        def Close(self) -> None:
            pass

    class Win32Security:
        LOGON32_LOGON_NETWORK, LOGON32_PROVIDER_DEFAULT = 3, 0
        calls: list[tuple[object, ...]] = []

        @classmethod
        def LogonUser(cls, *args: object) -> Handle:
            cls.calls.append(args)
            if args[2] != "richtig":
                raise OSError(1326, "LogonUser", "The user name or password is incorrect.")
            return Handle()

    monkeypatch.setitem(sys.modules, "win32security", Win32Security)

    assert windows_logon_check("FIRMA\\svc", "richtig")
    assert not windows_logon_check("svc@firma.local", "falsch")
    assert Win32Security.calls == [
        ("svc", "FIRMA", "richtig", 3, 0),
        ("svc@firma.local", None, "falsch", 3, 0),
    ]


# --- the commands on SwyxWare ---------------------------------------------------------------


async def test_enabling_a_broadcast_group_makes_a_call_routing_agent_with_its_file(
    fake: FakeSwyx, tmp_path: Path
) -> None:
    from edge_agent.cache import LocalCache
    from edge_agent.commands import Commands

    pbx = SwyxPbx(fake, agent_dir=AGENT_DIR, dialer_login=("Rundruf", "sip-geheim"))
    commands = Commands(pbx, LocalCache(tmp_path / "state"), None)  # type: ignore[arg-type]
    login = ({"host": SERVER, "adminUser": ADMIN}, {"adminPassword": PASSWORD})
    assert (await commands.run("verifyPbxCredentials", *login)).ok

    payload = {"groupPbxId": "5", "agentName": "Rundruf Brandschutz"}
    outcome = await commands.run("enableBroadcast", payload, {"pin": "482913"})
    again = await commands.run("enableBroadcast", payload, {"pin": "482913"})

    assert outcome.ok and again.ok, (outcome.error, again.error)
    agent_id = outcome.result["agentUserId"]
    assert again.result["agentUserId"] == agent_id
    agents = [u for u in (await pbx.directory()).users if u.name == "Rundruf Brandschutz"]
    assert len(agents) == 1 and agents[0].callrouting_only
    assert agent_id not in {user_id for user_id, _, _ in fake.logins}  # no login, no license
    text = fake.files[AGENT_DIR + f"\\rundruf_agent_{agent_id}.txt"]
    assert text.startswith(f"pin=482913\nnumber={outcome.result['extension']}\n")

    assert (await commands.run("disableBroadcast", {"groupPbxId": "5"}, {})).ok
    assert fake.files == {}


async def test_an_agent_without_description_is_still_an_agent(
    fake: FakeSwyx, swyx: SwyxPbx
) -> None:
    agent = await swyx.create_user("Rundruf Leer", "", callrouting_only=True)

    assert fake.users[-1]["Comment"] == AGENT_TAG
    assert agent.callrouting_only and agent.description == ""
    await swyx.set_agent_pin(agent.id, "1234")
    changed = await swyx.update_user(agent.id, description="")
    assert changed.callrouting_only and fake.users[-1]["Comment"] == AGENT_TAG


async def test_the_agent_tag_typed_into_a_description_is_refused(
    fake: FakeSwyx, swyx: SwyxPbx
) -> None:
    user = await swyx.create_user("Anna Licensed", "Empfang")
    sent_before = len(fake.users)
    with pytest.raises(PbxRefused, match="must not contain"):
        await swyx.create_user("Eve", f"x {AGENT_TAG}")
    with pytest.raises(PbxRefused, match="must not contain"):
        await swyx.update_user(user.id, description=f"x {AGENT_TAG}")
    assert len(fake.users) == sent_before
    assert not (await swyx.directory()).users[-1].callrouting_only
