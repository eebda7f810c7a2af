"""The durable write both deployables share (edge_agent/files.py), on POSIX and, with
the platform check patched, its Windows branch."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge_agent import files, platforms
from tests.agent.windows_fakes import (
    CONTAINER_INHERIT_ACE,
    DACL_SECURITY_INFORMATION,
    FILE_ALL_ACCESS,
    OBJECT_INHERIT_ACE,
    PROTECTED_DACL_SECURITY_INFORMATION,
    SE_FILE_OBJECT,
    FakePywin32,
)


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> FakePywin32:
    fake = FakePywin32()
    monkeypatch.setattr(platforms, "on_windows", lambda: True)
    monkeypatch.setattr(files, "_pywin32", fake.modules)
    return fake


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(platforms.on_windows(), reason="POSIX modes")
def test_it_writes_whole_files_only_the_owner_may_read(tmp_path: Path) -> None:
    target = tmp_path / "state" / "agent" / "agent.json"

    files.write_json(target, {"token": "secret"})
    files.write_json(target, {"token": "newer"})

    assert files.read_json(target, None) == {"token": "newer"}
    assert mode(target) == 0o600
    assert mode(tmp_path / "state") == mode(tmp_path / "state" / "agent") == 0o700
    assert os.listdir(target.parent) == ["agent.json"]  # no temp file left


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cache.json"
    files.write_json(target, {"n": 1})

    def refuse(source: str, dest: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        files.write_json(target, {"n": 2})

    assert files.read_json(target, None) == {"n": 1}
    assert os.listdir(tmp_path) == ["cache.json"]


def test_an_existing_folder_keeps_its_rights(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)

    files.write_atomic(folder / "x", b"x")

    assert mode(folder) == 0o755  # the installer's choice, not ours


def test_on_windows_each_folder_made_is_restricted_to_the_service_account(
    tmp_path: Path, windows: FakePywin32
) -> None:
    (tmp_path / "ProgramData").mkdir()

    files.write_atomic(tmp_path / "ProgramData" / "Rundruf" / "agent" / "agent.json", b"{}")
    files.write_atomic(tmp_path / "ProgramData" / "Rundruf" / "agent" / "cache.json", b"{}")

    made = [str(tmp_path / "ProgramData" / "Rundruf"), str(tmp_path / "ProgramData/Rundruf/agent")]
    assert [call[0] for call in windows.protected] == made  # parents first, existing ones not
    inherited = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE
    for _, kind, info, dacl in windows.protected:
        assert kind == SE_FILE_OBJECT
        assert info == DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION
        assert [(flags, mask, sid) for _, flags, mask, sid in dacl.aces] == [
            (inherited, FILE_ALL_ACCESS, windows.account),
            (inherited, FILE_ALL_ACCESS, "S-1-5-18"),  # SYSTEM
            (inherited, FILE_ALL_ACCESS, "S-1-5-32-544"),  # Administrators
        ]


def test_on_windows_without_pywin32_no_folder_is_left_with_inherited_rights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platforms, "on_windows", lambda: True)  # the real import fails here

    with pytest.raises(ImportError, match=r"pywin32 is needed on Windows .*pip install rundruf"):
        files.write_atomic(tmp_path / "agent" / "agent.json", b"{}")

    assert not (tmp_path / "agent").exists()


def test_on_windows_the_folder_is_not_opened_for_fsync(
    tmp_path: Path, windows: FakePywin32, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def no_folders(path: str | Path, flags: int, *args: int) -> int:
        if Path(path).is_dir():
            raise PermissionError(13, "Access is denied")  # what Windows answers
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_folders)

    files.write_atomic(tmp_path / "jobs" / "a.json", b"{}")

    assert (tmp_path / "jobs" / "a.json").read_bytes() == b"{}"
    monkeypatch.setattr(platforms, "on_windows", lambda: False)
    with pytest.raises(PermissionError):  # the POSIX branch does open it
        files.write_atomic(tmp_path / "jobs" / "b.json", b"{}")


def test_on_windows_a_file_held_open_elsewhere_is_replaced_once_it_is_free(
    tmp_path: Path, windows: FakePywin32, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cache.json"
    real_replace = os.replace
    refusals = [PermissionError(13, "Access is denied")] * 2

    def busy(source: str, dest: Path) -> None:
        if refusals:
            raise refusals.pop()
        real_replace(source, dest)

    monkeypatch.setattr(os, "replace", busy)
    monkeypatch.setattr(files, "REPLACE_PAUSE_S", 0.0)

    files.write_atomic(target, b"new")

    assert target.read_bytes() == b"new" and refusals == []
    refusals.extend([PermissionError(13, "Access is denied")] * files.REPLACE_ATTEMPTS)
    with pytest.raises(PermissionError):
        files.write_atomic(target, b"newer")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["cache.json"]


def test_elsewhere_a_refused_rename_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []

    def refuse(source: str, dest: Path) -> None:
        attempts.append(source)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        files.write_atomic(tmp_path / "x", b"x")
    assert len(attempts) == 1


def test_a_move_keeps_the_bytes_and_the_modification_time(tmp_path: Path) -> None:
    source = tmp_path / "jobs" / "a.json"
    source.parent.mkdir()
    source.write_bytes(b"\x00{broken")
    os.utime(source, (1_700_000_000, 1_700_000_000))
    target = tmp_path / "quarantine" / "t-a.json"

    files.move_atomic(source, target)

    assert not source.exists()
    assert target.read_bytes() == b"\x00{broken"
    assert target.stat().st_mtime == 1_700_000_000


def test_on_windows_a_move_waits_for_a_file_held_open_elsewhere(
    tmp_path: Path, windows: FakePywin32, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A virus scanner looking at the damaged job file must not leave it in jobs/.
    source = tmp_path / "a.json"
    source.write_bytes(b"{")
    real_replace = os.replace
    refusals = [PermissionError(13, "Access is denied")] * 2

    def busy(old: str, new: Path) -> None:
        if refusals:
            raise refusals.pop()
        real_replace(old, new)

    monkeypatch.setattr(os, "replace", busy)
    monkeypatch.setattr(files, "REPLACE_PAUSE_S", 0.0)

    files.move_atomic(source, tmp_path / "quarantine" / "a.json")

    assert (tmp_path / "quarantine" / "a.json").read_bytes() == b"{" and refusals == []
