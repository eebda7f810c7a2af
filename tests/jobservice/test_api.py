"""The job service's API: accepting, idempotency, long polls, deleting, restarts, tokens."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from swyx_jobservice import app as app_module
from swyx_jobservice import store as store_module
from tests.jobservice.support import (
    AGENT,
    ROUTING,
    Service,
    b64,
    bearer,
    job_body,
    make_settings,
    wav_bytes,
)


async def test_it_accepts_a_job_and_keeps_it_on_disk(service: Service) -> None:
    response = await service.post(job_body())
    assert response.status_code == 201
    job_id = response.json()["id"]
    assert response.json() == {"id": job_id, "created": True}
    assert uuid.UUID(job_id).version == 4
    assert service.files() == [f"jobs/{job_id}.json"]
    stored = json.loads((service.jobs_dir / f"{job_id}.json").read_text())
    assert stored["id"] == job_id and stored["recording"] is None
    assert stored["receivedAt"].endswith("+00:00")
    [polled] = await service.poll()
    assert polled == stored
    assert {k: polled[k] for k in job_body() if k != "recording"} == {
        k: v for k, v in job_body().items() if k != "recording"
    }


async def test_it_accepts_a_job_for_a_group_without_agent_number(service: Service) -> None:
    job_id = await service.accepted(job_body(agentNumber=None, groupId="grp-7", callerName=None))
    [job] = await service.poll()
    assert (job["id"], job["groupId"], job["agentNumber"]) == (job_id, "grp-7", None)


# -- recordings -----------------------------------------------------------------


async def test_it_serves_the_uploaded_recording_byte_for_byte(service: Service) -> None:
    audio = wav_bytes(1.5)
    job_id = await service.accepted(job_body(mode=3, recording=b64(audio)))
    assert service.files() == [f"jobs/{job_id}.json", f"jobs/{job_id}.wav"]
    response = await service.recording(job_id)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.content == audio
    [job] = await service.poll()
    assert job["recording"] == {
        "sha256": hashlib.sha256(audio).hexdigest(),
        "bytes": len(audio),
        "durationMs": 1500,
    }


async def test_it_accepts_base64_wrapped_in_lines(service: Service) -> None:
    audio = wav_bytes(0.2)
    wrapped = "\n".join(b64(audio)[i : i + 76] for i in range(0, len(b64(audio)), 76))
    job_id = await service.accepted(job_body(mode=3, recording=wrapped))
    assert (await service.recording(job_id)).content == audio


async def test_it_copies_a_recording_file_at_accept_time(service: Service) -> None:
    audio = wav_bytes(2)
    pbx_file = service.recordings_dir / "rec-1.wav"
    pbx_file.write_bytes(audio)
    body = job_body(mode=3, recordingPath=str(pbx_file))
    job_id = await service.accepted(body)
    pbx_file.unlink()  # the PBX cleans up after itself
    assert (await service.recording(job_id)).content == audio
    [job] = await service.poll()
    assert job["recordingPath"] == str(pbx_file)
    assert job["recording"]["durationMs"] == 2000
    # A retry after the PBX deleted its file is still the same job.
    again = await service.post(body)
    assert (again.status_code, again.json()) == (200, {"id": job_id, "created": False})


async def test_it_has_no_recording_for_other_modes(service: Service) -> None:
    job_id = await service.accepted(job_body())
    response = await service.recording(job_id)
    assert response.status_code == 404
    assert response.json()["error"] == "this job has no recording"


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "..%2F..%2Fetc"])
async def test_it_answers_404_for_unknown_jobs(service: Service, job_id: str) -> None:
    assert (await service.recording(job_id)).status_code == 404
    assert (await service.delete(job_id)).status_code == 404


# -- idempotency ----------------------------------------------------------------


async def test_a_repeated_key_returns_the_same_job(service: Service) -> None:
    first = await service.post(job_body("k-1"))
    again = await service.post(job_body("k-1"))
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "created": False}
    assert len(await service.poll()) == 1
    assert len(service.files()) == 1


async def test_a_repeated_key_with_the_same_recording_returns_the_same_job(
    service: Service,
) -> None:
    body = job_body(mode=3, recording=b64(wav_bytes()))
    job_id = await service.accepted(body)
    again = await service.post(body)
    assert again.json() == {"id": job_id, "created": False}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mode": 1}, "mode"),
        ({"callerNumber": "999"}, "callerNumber"),
        ({"agentNumber": "232"}, "agentNumber"),
        ({"memberStates": None}, "memberStates"),
        ({"mode": 3, "recording": b64(wav_bytes(0.3))}, "recording"),
    ],
)
async def test_a_repeated_key_with_other_content_conflicts(
    service: Service, change: dict[str, object], field: str
) -> None:
    await service.accepted(job_body("k-2"))
    response = await service.post(job_body("k-2", **change))
    assert response.status_code == 409
    assert response.json()["field"] == "idempotencyKey"
    assert field in response.json()["error"]
    assert len(service.files()) == 1


async def test_a_repeated_key_with_other_audio_conflicts(service: Service) -> None:
    await service.accepted(job_body("k-3", mode=3, recording=b64(wav_bytes(0.5))))
    response = await service.post(job_body("k-3", mode=3, recording=b64(wav_bytes(0.6))))
    assert response.status_code == 409
    assert "recording" in response.json()["error"]


async def test_parallel_posts_with_one_key_make_one_job(service: Service) -> None:
    responses = await asyncio.gather(*(service.post(job_body("race")) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(service.files()) == 1


# -- delete and tombstones ------------------------------------------------------


async def test_delete_removes_the_job_and_leaves_a_tombstone(service: Service) -> None:
    job_id = await service.accepted(job_body("k-del", mode=3, recording=b64(wav_bytes())))
    response = await service.delete(job_id)
    assert response.status_code == 204 and response.content == b""
    tomb = hashlib.sha256(b"k-del").hexdigest()
    assert service.files() == [f"done/{tomb}"]
    assert (service.done_dir / tomb).read_text() == job_id
    assert await service.poll() == []
    assert (await service.recording(job_id)).status_code == 404
    assert (await service.delete(job_id)).status_code == 404


async def test_a_late_retry_after_delete_does_not_start_the_alarm_again(
    service: Service,
) -> None:
    job_id = await service.accepted(job_body("k-late"))
    await service.delete(job_id)
    for svc in (service, service.restart()):
        response = await svc.post(job_body("k-late"))
        assert (response.status_code, response.json()) == (200, {"id": job_id, "created": False})
        assert await svc.poll() == []
    assert [f for f in service.files() if f.startswith("jobs/")] == []


async def test_tombstones_expire(service: Service) -> None:
    job_id = await service.accepted(job_body("k-old"))
    await service.delete(job_id)
    tomb = service.done_dir / hashlib.sha256(b"k-old").hexdigest()
    old = time.time() - 49 * 3600
    os.utime(tomb, (old, old))
    restarted = service.restart()  # cleans expired tombstones at start
    assert not tomb.exists()
    response = await restarted.post(job_body("k-old"))
    assert response.status_code == 201 and response.json()["id"] != job_id


async def test_the_running_app_cleans_expired_tombstones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "CLEAN_EVERY_SECONDS", 0.05)
    service = Service.start(make_settings(tmp_path, tombstone_hours=0))
    try:
        await service.delete(await service.accepted(job_body("k-clean")))
        assert len(service.files()) == 1
        async with service.app.router.lifespan_context(service.app):
            await asyncio.sleep(0.3)
        assert service.files() == []
    finally:
        await service.close()


# -- long poll ------------------------------------------------------------------


async def test_a_long_poll_returns_as_soon_as_a_job_arrives(service: Service) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(service.poll(wait=10))
    await asyncio.sleep(0.2)
    assert not poll.done(), "with no job, the poll waits"
    posted = time.monotonic()
    job_id = await service.accepted(job_body())
    jobs = await asyncio.wait_for(poll, 5)
    answered = time.monotonic()
    assert [j["id"] for j in jobs] == [job_id]
    assert answered - posted < 1.0
    assert answered - started < 2.0, "returned well before the 10 s wait ended"


async def test_all_waiting_polls_wake_up(service: Service) -> None:
    polls = [asyncio.create_task(service.poll(wait=10)) for _ in range(3)]
    await asyncio.sleep(0.1)
    job_id = await service.accepted(job_body())
    for jobs in await asyncio.wait_for(asyncio.gather(*polls), 2):
        assert [j["id"] for j in jobs] == [job_id]


async def test_a_poll_answers_at_once_with_pending_jobs_oldest_first(service: Service) -> None:
    ids = [await service.accepted(job_body(f"k-{n}")) for n in range(3)]
    started = time.monotonic()
    assert [j["id"] for j in await service.poll(wait=10)] == ids
    assert time.monotonic() - started < 1.0


async def test_a_poll_without_jobs_ends_after_its_wait(service: Service) -> None:
    started = time.monotonic()
    assert await service.poll(wait=0.3) == []
    assert 0.25 < time.monotonic() - started < 2.0
    assert await service.poll() == []  # wait=0 answers at once


async def test_a_poll_waits_past_the_jobs_the_agent_runs_already(service: Service) -> None:
    running = await service.accepted(job_body("k-running"))
    url = f"/jobs?wait=10&known={running}"
    poll = asyncio.create_task(service.client.get(url, headers=bearer(AGENT)))
    await asyncio.sleep(0.3)
    assert not poll.done(), "a known job alone does not end the wait"
    fresh = await service.accepted(job_body("k-fresh"))
    response = await asyncio.wait_for(poll, 5)
    assert [j["id"] for j in response.json()["jobs"]] == [running, fresh]


@pytest.mark.parametrize("known", ["not-an-id", ",".join(["0" * 32] * 2) + ",x"])
async def test_it_rejects_bad_known_lists(service: Service, known: str) -> None:
    response = await service.client.get(f"/jobs?wait=0&known={known}", headers=bearer(AGENT))
    assert response.status_code == 400
    assert response.json()["field"] == "known"


@pytest.mark.parametrize("wait", ["-1", "61", "abc", "nan", "inf", ""])
async def test_it_rejects_bad_waits(service: Service, wait: str) -> None:
    response = await service.client.get(f"/jobs?wait={wait}", headers=bearer(AGENT))
    assert response.status_code == 400
    assert response.json()["field"] == "wait"


# -- restarts -------------------------------------------------------------------


async def test_jobs_survive_a_new_app_instance(service: Service) -> None:
    audio = wav_bytes(0.7)
    ids = [
        await service.accepted(job_body("k-a")),
        await service.accepted(job_body("k-b", mode=3, recording=b64(audio))),
        await service.accepted(job_body("k-c", mode=1, groupId="g")),
    ]
    before = await service.poll()
    restarted = service.restart()
    assert await restarted.poll() == before
    assert [j["id"] for j in before] == ids
    assert (await restarted.recording(ids[1])).content == audio
    again = await restarted.post(job_body("k-b", mode=3, recording=b64(audio)))
    assert again.json() == {"id": ids[1], "created": False}
    conflict = await restarted.post(job_body("k-a", mode=1))
    assert conflict.status_code == 409


async def test_a_restart_finishes_an_interrupted_delete(service: Service) -> None:
    job_id = await service.accepted(job_body("k-int", mode=3, recording=b64(wav_bytes())))
    # The service stopped after writing the tombstone, before unlinking the job.
    tomb = service.done_dir / hashlib.sha256(b"k-int").hexdigest()
    service.done_dir.mkdir(exist_ok=True)
    tomb.write_text(job_id)
    restarted = service.restart()
    assert await restarted.poll() == []
    assert service.files() == [f"done/{tomb.name}"]
    assert (await restarted.post(job_body("k-int"))).json()["id"] == job_id


async def test_a_restart_removes_crash_leftovers(service: Service) -> None:
    job_id = await service.accepted(job_body())
    orphan = service.jobs_dir / f"{uuid.uuid4()}.wav"  # crash between wav and json
    orphan.write_bytes(wav_bytes())
    temp = service.jobs_dir / ".x.json.abc123"  # crash before the rename
    temp.write_bytes(b"{")
    restarted = service.restart()
    assert service.files() == [f"jobs/{job_id}.json"]
    assert [j["id"] for j in await restarted.poll()] == [job_id]


async def test_a_restart_quarantines_unreadable_job_files(service: Service) -> None:
    job_id = await service.accepted(job_body())
    bad = service.jobs_dir / f"{uuid.uuid4()}.json"
    bad.write_text('{"id": "nope"}')
    restarted = service.restart()
    assert [j["id"] for j in await restarted.poll()] == [job_id]
    assert not bad.exists()
    [kept] = (service.settings.data_dir / "quarantine").glob("*.json")
    assert kept.read_text() == '{"id": "nope"}'


# -- health ---------------------------------------------------------------------


async def test_health_reports_pending_jobs_and_a_writable_folder(service: Service) -> None:
    await service.accepted(job_body())
    response = await service.client.get("/health", headers=bearer(AGENT))
    assert response.json() == {
        "status": "ok",
        "problems": [],
        "pendingJobs": 1,
        "quarantinedJobs": 0,
        "heldJobs": 0,
        "dataDir": True,
    }
    assert service.files() == [f for f in service.files() if not f.startswith("jobs/.")]


def break_jobs_folder(service: Service) -> None:
    """The jobs folder becomes a file: every write in it fails, for root too
    (the tests run as root, where a read-only mode would not stop a write)."""
    shutil.rmtree(service.jobs_dir)
    service.jobs_dir.write_text("not a folder any more")


def repair_jobs_folder(service: Service) -> None:
    service.jobs_dir.unlink()
    service.jobs_dir.mkdir(mode=0o700)


async def test_health_is_failing_with_a_reason_when_the_folder_cannot_be_written(
    service: Service,
) -> None:
    break_jobs_folder(service)
    response = await service.client.get("/health", headers=bearer(AGENT))
    assert response.status_code == 200
    assert response.json() == {
        "status": "failing",
        "problems": ["dataDirNotWritable"],
        "pendingJobs": 0,
        "quarantinedJobs": 0,
        "heldJobs": 0,
        "dataDir": False,
    }
    repair_jobs_folder(service)
    again = await service.client.get("/health", headers=bearer(AGENT))
    assert (again.json()["status"], again.json()["problems"]) == ("ok", [])


async def test_health_answers_in_time_and_failing_while_the_disk_hangs(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk or share that hangs cannot be made here; the probe is held instead.
    release = threading.Event()
    probes: list[int] = []

    def hanging_probe() -> bool:
        probes.append(1)
        release.wait(10)
        return True

    monkeypatch.setattr(app_module, "PROBE_SECONDS", 0.2)
    monkeypatch.setattr(service.app.state.store, "writable", hanging_probe)
    try:
        started = time.monotonic()
        first = await service.client.get("/health", headers=bearer(AGENT))
        second = await service.client.get("/health", headers=bearer(AGENT))
        assert time.monotonic() - started < 2
        assert [first.json()["problems"], second.json()["problems"]] == [["dataDirNotWritable"]] * 2
        assert probes == [1]  # the second poll waits on the probe in flight, no new thread
    finally:
        release.set()


@pytest.mark.parametrize("mode", [2, 3])
async def test_it_answers_503_with_a_reason_when_the_folder_cannot_be_written(
    service: Service, mode: int
) -> None:
    break_jobs_folder(service)
    recording = b64(wav_bytes()) if mode == 3 else None
    response = await service.post(job_body(mode=mode, recording=recording))
    assert response.status_code == 503
    assert response.json()["code"] == "dataDirNotWritable"
    assert "could not be stored" in response.json()["error"]
    repair_jobs_folder(service)
    assert service.files() == []
    assert await service.poll() == []
    # Nothing of the refused job is remembered: the routing script's retry makes it.
    retry = await service.post(job_body(mode=mode, recording=recording))
    assert (retry.status_code, retry.json()["created"]) == (201, True)


async def test_it_leaves_no_recording_when_the_job_file_cannot_be_written(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one place a job is written fails for the json only (a read-only or full
    # disk after the wav went in); the wav must go, the answer be a 503.
    real_write = store_module.write_atomic

    def json_refused(path: Path, data: bytes) -> None:
        if path.suffix == ".json":
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real_write(path, data)

    monkeypatch.setattr(store_module, "write_atomic", json_refused)
    response = await service.post(job_body(mode=3, recording=b64(wav_bytes())))
    assert (response.status_code, response.json()["code"]) == (503, "dataDirNotWritable")
    assert service.files() == []
    assert await service.poll() == []


# -- tokens ---------------------------------------------------------------------

JOB = "00000000-0000-4000-8000-000000000000"
ENDPOINTS = [
    ("POST", "/jobs", ROUTING),
    ("GET", "/jobs", AGENT),
    ("GET", f"/jobs/{JOB}/recording", AGENT),
    ("DELETE", f"/jobs/{JOB}", AGENT),
    ("GET", "/health", AGENT),
    ("GET", "/quarantine", AGENT),
    ("POST", "/quarantine/20261207T060000Z-x.json/reported", AGENT),
]


@pytest.mark.parametrize(("method", "path", "owner"), ENDPOINTS)
@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer wrong-token-0123456789", 401),
        ("Bearer ", 401),
        (f"Basic {AGENT}", 401),
        (f"Bearer {AGENT}x", 401),
        ("Bearer tökén".encode(), 401),
        ("other", 403),
        ("owner", None),
    ],
)
async def test_tokens(
    service: Service,
    method: str,
    path: str,
    owner: str,
    authorization: str | bytes | None,
    status: int | None,
) -> None:
    headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
    if authorization == "owner":
        headers["Authorization"] = f"Bearer {owner}"
    elif authorization == "other":
        headers["Authorization"] = f"Bearer {ROUTING if owner == AGENT else AGENT}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    content = json.dumps(job_body()).encode() if method == "POST" else None
    response = await service.client.request(method, path, headers=headers, content=content)
    if status is None:
        assert response.status_code not in (401, 403)
        return
    assert response.status_code == status, response.text
    assert response.json()["error"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if method == "POST":
        assert service.files() == []


async def test_unknown_routes_and_methods_answer_json(service: Service) -> None:
    missing = await service.client.get("/nothing", headers=bearer(AGENT))
    assert (missing.status_code, missing.json()["error"]) == (404, "no such endpoint")
    wrong = await service.client.put("/jobs", headers=bearer(AGENT))
    assert wrong.status_code == 405 and wrong.json()["field"] is None
