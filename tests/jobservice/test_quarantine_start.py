"""No file in the data folder can stop or stall the job service's start, and the
quarantine folder never stops it either (issue 14, point 8, review points 1, 3, 5, 9,
11, 13)."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest

from edge_agent import files as agent_files
from edge_agent import platforms
from swyx_jobservice import jobfile
from swyx_jobservice import quarantine as quarantine_module
from swyx_jobservice.errors import JobFileBusy, JobFileDamaged
from swyx_jobservice.quarantine import is_entry_name, quarantine_name
from swyx_jobservice.settings import JobServiceSettings
from tests.jobservice.support import AGENT, Service, bearer, job_body, make_settings


async def health(service: Service) -> dict[str, Any]:
    response = await service.client.get("/health", headers=bearer(AGENT))
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def listing(service: Service, query: str = "") -> dict[str, Any]:
    response = await service.client.get(f"/quarantine{query}", headers=bearer(AGENT))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def reported(service: Service, name: str) -> int:
    response = await service.client.post(f"/quarantine/{name}/reported", headers=bearer(AGENT))
    return response.status_code


def start_within(settings: JobServiceSettings, seconds: float) -> Service:
    """Starts the service in a thread and fails (instead of hanging) when it takes longer."""
    started: list[Service] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            started.append(Service.start(settings))
        except BaseException as exc:  # handed to the test
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if failed:
        raise failed[0]
    assert started, f"the start did not finish within {seconds} s"
    return started[0]


@pytest.fixture
def settings(tmp_path: Path) -> JobServiceSettings:
    return make_settings(tmp_path)


async def accepted_job(settings: JobServiceSettings) -> str:
    service = Service.start(settings)
    try:
        return await service.accepted(job_body("k-good"))
    finally:
        await service.close()


def jobs(settings: JobServiceSettings) -> Path:
    return settings.data_dir / "jobs"


def _unblock(fifo: Path) -> None:
    # If an old start sits in open(), a writer lets it go on (and fail the test).
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


async def test_a_fifo_named_like_a_job_does_not_block_the_start(
    settings: JobServiceSettings,
) -> None:
    good = await accepted_job(settings)
    fifo = jobs(settings) / f"{uuid.uuid4()}.json"
    os.mkfifo(fifo)
    try:
        service = start_within(settings, 10)
    finally:
        _unblock(fifo)

    assert [j["id"] for j in await service.poll()] == [good]
    [entry] = (await listing(service))["entries"]
    assert entry["kind"] == "FIFO" and entry["bytes"] == 0
    assert not fifo.is_fifo() and not fifo.is_symlink()
    assert (await health(service))["quarantinedJobs"] == 1


async def test_a_huge_sparse_job_file_is_judged_by_its_size_not_read(
    settings: JobServiceSettings,
) -> None:
    good = await accepted_job(settings)
    huge = jobs(settings) / f"{uuid.uuid4()}.json"
    with huge.open("wb") as f:
        f.truncate(256 * 1024 * 1024)  # sparse: no disk, but 256 MiB to read

    tracemalloc.start()
    try:
        service = start_within(settings, 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 16 * 1024 * 1024
    assert [j["id"] for j in await service.poll()] == [good]
    [entry] = (await listing(service))["entries"]
    assert entry["bytes"] == 256 * 1024 * 1024


async def test_a_symlink_to_dev_zero_is_quarantined_as_a_link_never_followed(
    settings: JobServiceSettings,
) -> None:
    good = await accepted_job(settings)
    link = jobs(settings) / f"{uuid.uuid4()}.json"
    link.symlink_to("/dev/zero")

    service = start_within(settings, 10)

    assert [j["id"] for j in await service.poll()] == [good]
    [entry] = (await listing(service))["entries"]
    assert entry["kind"] == "symbolic link"
    moved = settings.data_dir / entry["file"]
    assert moved.is_symlink() and os.readlink(moved) == "/dev/zero"


@pytest.mark.parametrize(
    "make",
    ["folder", "link to a folder", "two dots", "spaces and umlauts"],
)
async def test_what_is_quarantined_is_listed_and_counted_alike(
    settings: JobServiceSettings, make: str
) -> None:
    folder = jobs(settings)
    folder.mkdir(parents=True)
    if make == "folder":
        (folder / f"{uuid.uuid4()}.json").mkdir()
    elif make == "link to a folder":
        (folder / f"{uuid.uuid4()}.json").symlink_to(settings.data_dir)
    elif make == "two dots":
        (folder / "alarm..kopie.json").write_text('{"id": "cut')
    else:
        (folder / "Kopie von Alarm ä.json").write_text('{"id": "cut')

    service = Service.start(settings)

    before = (await health(service))["quarantinedJobs"]
    listed = await listing(service)
    after = (await health(service))["quarantinedJobs"]
    assert before == after == listed["total"] == len(listed["entries"]) == 1
    [entry] = listed["entries"]
    assert entry["file"] == f"quarantine/{entry['name']}"
    assert await reported(service, entry["name"]) == 204
    assert (await health(service))["status"] == "ok"


@pytest.mark.parametrize(
    "original",
    [
        "alarm..kopie.json",
        "..json",
        "x" * 300 + ".json",
        "Kopie von Alarm ä.json",
        os.fsdecode(b"\xff\xfe.json"),
        ".json",
        "-.json",
        "a.b.c.json",
    ],
)
def test_every_name_the_quarantine_makes_is_one_it_lists(original: str) -> None:
    name = quarantine_name(quarantine_module.datetime.now(quarantine_module.UTC), original)
    assert is_entry_name(name) and len(name) <= quarantine_module.MAX_NAME


async def test_a_quarantine_folder_that_is_a_file_does_not_stop_the_service(
    settings: JobServiceSettings,
) -> None:
    good = await accepted_job(settings)
    bad = jobs(settings) / f"{uuid.uuid4()}.json"
    bad.write_text('{"id": "cut')
    shutil.rmtree(settings.data_dir / "quarantine")
    (settings.data_dir / "quarantine").write_text("not a folder")

    service = Service.start(settings)

    assert [j["id"] for j in await service.poll()] == [good]
    body = await health(service)
    assert body["problems"] == ["quarantinedJobs", "quarantineNotWritable"]
    # Stuck where it lies, listed from there and told all the same.
    [entry] = (await listing(service))["entries"]
    assert entry["file"] == f"jobs/{bad.name}" and bad.exists()
    assert await reported(service, entry["name"]) == 204
    assert (await health(service))["problems"] == ["quarantineNotWritable"]
    assert (await listing(service))["entries"] == []


async def test_a_broken_quarantine_folder_without_damage_still_starts(
    settings: JobServiceSettings,
) -> None:
    good = await accepted_job(settings)
    shutil.rmtree(settings.data_dir / "quarantine")
    (settings.data_dir / "quarantine").write_text("not a folder")

    service = Service.start(settings)

    assert [j["id"] for j in await service.poll()] == [good]
    assert (await health(service))["problems"] == ["quarantineNotWritable"]


async def test_a_reported_folder_that_is_a_file_is_handled(settings: JobServiceSettings) -> None:
    folder = jobs(settings)
    folder.mkdir(parents=True)
    (folder / f"{uuid.uuid4()}.json").write_text('{"id": "cut')
    (settings.data_dir / "quarantine").mkdir()
    (settings.data_dir / "quarantine" / "reported").write_text("not a folder")

    service = Service.start(settings)
    [entry] = (await listing(service))["entries"]

    # The central service has it: told, kept in quarantine/, the folder a health problem.
    assert await reported(service, entry["name"]) == 204
    assert (await listing(service))["entries"] == []
    body = await health(service)
    assert (body["quarantinedJobs"], body["problems"]) == (0, ["quarantineNotWritable"])
    assert (settings.data_dir / "quarantine" / entry["name"]).exists()
    assert await reported(service, entry["name"]) == 204  # a repeat too
    # Repaired by an operator: the next listing moves it on, and the problem clears.
    (settings.data_dir / "quarantine" / "reported").unlink()
    assert (await listing(service))["entries"] == []
    assert (await health(service))["status"] == "ok"
    assert (settings.data_dir / "quarantine" / "reported" / entry["name"]).exists()


def refuse_moves(monkeypatch: pytest.MonkeyPatch, into: str = "quarantine") -> None:
    """A quarantine folder that takes nothing (the tests run as root: a mode would not)."""
    real = agent_files.rename

    def rename(source: Path, target: Path) -> None:
        if target.parent.name == into:
            raise PermissionError(errno.EACCES, "quarantine not writable", str(target))
        real(source, target)

    monkeypatch.setattr(agent_files, "rename", rename)


async def test_a_stuck_file_with_an_odd_name_is_told_once(
    settings: JobServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = jobs(settings)
    folder.mkdir(parents=True)
    (folder / "Kopie von alarm.json").write_text('{"agentNumber": "231"')
    refuse_moves(monkeypatch)

    service = Service.start(settings)
    [entry] = (await listing(service))["entries"]

    assert is_entry_name(entry["name"]) and entry["file"] == "jobs/Kopie von alarm.json"
    assert entry["agentNumber"] == "231"
    assert await reported(service, entry["name"]) == 204
    assert (await listing(service))["entries"] == []
    body = await health(service)
    assert (body["quarantinedJobs"], body["problems"]) == (0, ["quarantineNotWritable"])
    # At the next start it is stuck again under the same name: the central service's
    # key sees a repeat, no second mail.
    [again] = (await listing(service.restart()))["entries"]
    assert again["name"] == entry["name"]


async def test_a_stuck_file_whose_name_is_not_utf8_is_listed(
    settings: JobServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = jobs(settings)
    folder.mkdir(parents=True)
    (folder / os.fsdecode(b"\xff.json")).write_bytes(b"{")
    refuse_moves(monkeypatch)

    service = Service.start(settings)
    [entry] = (await listing(service))["entries"]

    assert entry["file"] == "jobs/\ufffd.json"
    assert await reported(service, entry["name"]) == 204


async def test_an_operator_removing_a_stuck_file_clears_it(
    settings: JobServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = jobs(settings) / f"{uuid.uuid4()}.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    refuse_moves(monkeypatch)
    service = Service.start(settings)
    assert len((await listing(service))["entries"]) == 1

    bad.unlink()

    assert (await listing(service))["entries"] == []
    assert (await health(service))["status"] == "ok"


async def test_a_recording_goes_back_when_its_job_file_cannot_follow(
    settings: JobServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = jobs(settings) / f"{uuid.uuid4()}.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"mode": 3')
    bad.with_suffix(".wav").write_bytes(b"RIFF")
    real = agent_files.rename

    def json_refused(source: Path, target: Path) -> None:
        if target.suffix == ".json":
            raise OSError(errno.EIO, "I/O error", str(target))
        real(source, target)

    monkeypatch.setattr(agent_files, "rename", json_refused)

    service = Service.start(settings)

    # No recording without its json in quarantine/, none lost in jobs/.
    assert bad.with_suffix(".wav").read_bytes() == b"RIFF"
    assert list((settings.data_dir / "quarantine").iterdir()) == []
    [entry] = (await listing(service))["entries"]
    assert entry["recording"] is True


async def test_a_job_file_that_may_not_be_read_now_is_held_not_quarantined(
    settings: JobServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = await accepted_job(settings)
    real = jobfile._read
    refusing = [True]

    def read(path: Path, limit: int) -> bytes:
        if refusing[0] and path.stem == held:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, limit)

    monkeypatch.setattr(jobfile, "_read", read)
    service = Service.start(settings)

    assert await service.poll() == []
    body = await health(service)
    assert (body["problems"], body["heldJobs"]) == (["jobFilesHeld"], 1)
    assert (await listing(service))["entries"] == []
    assert (jobs(settings) / f"{held}.json").exists()

    refusing[0] = False
    assert await service.app.state.store.retry_held() == 1
    assert [j["id"] for j in await service.poll()] == [held]
    assert (await health(service))["status"] == "ok"


async def test_an_io_error_reading_a_job_file_quarantines_it(
    settings: JobServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = await accepted_job(settings)
    real = jobfile._read

    def read(path: Path, limit: int) -> bytes:
        if path.stem == bad:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(path, limit)

    monkeypatch.setattr(jobfile, "_read", read)
    service = Service.start(settings)

    [entry] = (await listing(service))["entries"]
    assert entry["name"].endswith(f"-{bad}.json")


def test_on_windows_a_held_file_is_read_again_before_it_is_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "job.json"
    path.write_bytes(b"{}")
    monkeypatch.setattr(platforms, "on_windows", lambda: True)
    monkeypatch.setattr(jobfile, "READ_PAUSE_S", 0.001)
    flags: list[int] = []
    real_open = os.open
    refusals = [2]

    def windows_open(file: Any, mode: int, *args: Any) -> int:
        if Path(file) == path:
            flags.append(mode)
            if refusals[0]:
                refusals[0] -= 1
                # What a virus scanner holding the file gives (ERROR_SHARING_VIOLATION).
                raise PermissionError(errno.EACCES, "being used by another process")
        return real_open(file, mode, *args)

    monkeypatch.setattr(os, "open", windows_open)

    assert jobfile.Reader().read(path) == b"{}"
    assert len(flags) == 3
    # Windows has neither flag; O_BINARY where it exists.
    assert all(
        f & (getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)) == 0 for f in flags
    )

    refusals[0] = 100
    with pytest.raises(JobFileBusy):
        jobfile.Reader().read(path)


def test_on_posix_a_refused_read_is_held_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "job.json"
    path.write_bytes(b"{}")
    calls: list[Path] = []

    def refused(p: Path, limit: int) -> bytes:
        calls.append(p)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(jobfile, "_read", refused)
    with pytest.raises(JobFileBusy):
        jobfile.Reader().read(path)
    assert len(calls) == 1  # a file mode does not change by waiting


def test_a_file_bigger_than_the_limit_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_bytes(b" " * (jobfile.READ_LIMIT + 1))
    with pytest.raises(JobFileDamaged, match="more than"):
        jobfile.Reader().read(path)


async def test_a_fifo_as_tombstone_or_notice_does_not_block_the_start(
    settings: JobServiceSettings,
) -> None:
    good = await accepted_job(settings)
    fifos = [settings.data_dir / "done" / ("0" * 64), settings.data_dir / "notices" / "x.json"]
    fifos[1].parent.mkdir(exist_ok=True)
    for fifo in fifos:
        os.mkfifo(fifo)
    try:
        service = start_within(settings, 10)
    finally:
        for fifo in fifos:
            _unblock(fifo)
    assert [j["id"] for j in await service.poll()] == [good]


async def test_thousands_of_damaged_files_are_quarantined_quickly_and_listed_by_page(
    settings: JobServiceSettings,
) -> None:
    good = await accepted_job(settings)
    for _ in range(2000):
        (jobs(settings) / f"{uuid.uuid4()}.json").write_bytes(b'{"id": "cut')

    began = time.monotonic()
    service = start_within(settings, 60)
    took = time.monotonic() - began

    assert [j["id"] for j in await service.poll()] == [good]
    assert took < 10, f"the start took {took:.1f} s"
    first = await listing(service)
    assert (len(first["entries"]), first["total"]) == (50, 2000)
    names = [e["name"] for e in first["entries"]]
    assert names == sorted(names)
    second = await listing(service, f"?after={names[-1]}")
    assert second["entries"][0]["name"] > names[-1]
    assert (
        await service.client.get("/quarantine?limit=51", headers=bearer(AGENT))
    ).status_code == 400
