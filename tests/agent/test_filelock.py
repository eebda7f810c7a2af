"""The sidecar lock of the simulator's files (edge_agent/filelock.py): flock here and,
with the platform check patched, msvcrt's byte lock as on Windows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edge_agent import filelock, platforms
from edge_agent.pbx.sim import SimControl
from tests.agent.windows_fakes import FakeMsvcrt


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> FakeMsvcrt:
    fake = FakeMsvcrt()
    monkeypatch.setattr(platforms, "on_windows", lambda: True)
    monkeypatch.setattr(filelock, "_msvcrt", lambda: fake)
    return fake


def contend(lock: Path, holders: int = 4, rounds: int = 5) -> list[str]:
    """Each thread enters the lock `rounds` times; the log shows whether two overlapped."""
    log: list[str] = []

    def work(name: str) -> None:
        for _ in range(rounds):
            with filelock.exclusive(lock):
                log.append(f"in {name}")
                time.sleep(0.002)  # long enough for another thread to try
                log.append(f"out {name}")

    threads = [threading.Thread(target=work, args=(str(n),)) for n in range(holders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return log


def assert_never_overlapped(log: list[str], entries: int) -> None:
    assert len(log) == 2 * entries
    for entered, left in zip(log[::2], log[1::2], strict=True):
        assert (entered.split()[0], left.split()[0]) == ("in", "out")
        assert entered.split()[1] == left.split()[1]


def test_threads_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    assert_never_overlapped(contend(tmp_path / "state.json.lock"), 20)


def test_on_windows_the_lock_is_msvcrts_byte_lock_polled_until_free(
    tmp_path: Path, windows: FakeMsvcrt
) -> None:
    log = contend(tmp_path / "state.json.lock")

    assert_never_overlapped(log, 20)
    assert windows.refused > 0  # someone had to wait, and did
    modes = [mode for _, mode, _ in windows.calls]
    assert set(modes) == {FakeMsvcrt.LK_NBLCK, FakeMsvcrt.LK_UNLCK}
    assert modes.count(FakeMsvcrt.LK_NBLCK) == 20 + windows.refused
    assert modes.count(FakeMsvcrt.LK_UNLCK) == 20  # released before the close


def test_on_windows_a_lock_held_too_long_is_a_clear_error(
    tmp_path: Path, windows: FakeMsvcrt, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filelock, "WINDOWS_WAIT_S", 0.05)
    lock = tmp_path / "state.json.lock"

    with (
        filelock.exclusive(lock),
        pytest.raises(TimeoutError, match=r"state\.json\.lock stayed"),
        filelock.exclusive(lock),
    ):
        pass


def test_on_windows_no_simulator_update_is_lost(tmp_path: Path, windows: FakeMsvcrt) -> None:
    control = SimControl(tmp_path / "swyx.json")
    control.create("swyx.local", "admin", "pw")

    def add(n: int) -> None:
        for i in range(5):
            control.add_user(f"User {n}-{i}")

    threads = [threading.Thread(target=add, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert len(control.snapshot().users) == 30
    assert windows.calls  # went through the Windows branch
