"""Reading a recording with the open flags Windows has (no O_NOFOLLOW, no O_NONBLOCK:
`getattr(os, ..., 0)` in swyx_jobservice/recordings.py): the folder check alone keeps
reads inside the recordings folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from swyx_jobservice import recordings
from swyx_jobservice.errors import BadRequest


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(recordings, "_NOFOLLOW", 0)
    monkeypatch.setattr(recordings, "_NONBLOCK", 0)
    inside = tmp_path / "recordings"
    inside.mkdir()
    (tmp_path / "secret.wav").write_bytes(b"secret")
    return inside


def test_with_windows_flags_a_file_inside_is_read(folder: Path) -> None:
    (folder / "a.wav").write_bytes(b"RIFF")
    assert recordings.read_recording(folder, str(folder / "a.wav"), 100) == b"RIFF"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../secret.wav", "outside the recordings folder"),
        ("link.wav", "outside the recordings folder"),  # a symlink out of the folder
        (".", "outside the recordings folder"),
        ("sub", "not a regular file"),
    ],
)
def test_with_windows_flags_nothing_outside_is_read(folder: Path, name: str, reason: str) -> None:
    (folder / "link.wav").symlink_to(folder.parent / "secret.wav")
    (folder / "sub").mkdir()

    with pytest.raises(BadRequest, match=reason):
        recordings.read_recording(folder, str(folder / name), 100)
