"""`rundruf jobservice` as a real process on loopback: kill -9 loses no accepted job."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.jobservice.support import AGENT, ROUTING, bearer, job_body, wav_bytes
from tests.processes import RUNDRUF, clean_env, free_port, wait_until


class JobService:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.recordings = root / "recordings"
        self.recordings.mkdir()
        self.env = clean_env(
            RUNDRUF_JOBSERVICE_PORT=str(self.port),
            RUNDRUF_JOBSERVICE_DATA_DIR=str(root / "data"),
            RUNDRUF_JOBSERVICE_RECORDINGS_DIR=str(self.recordings),
            RUNDRUF_JOBSERVICE_AGENT_TOKEN=AGENT,
            RUNDRUF_JOBSERVICE_ROUTING_TOKEN=ROUTING,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "jobservice.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> JobService:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*RUNDRUF, "jobservice"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(self._healthy, 20, f"job service on {self.port}")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"job service exited: {self.log.read_text()[-2000:]}")
        try:
            response = httpx.get(self.url + "/health", headers=bearer(AGENT), timeout=1)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # SIGKILL: no shutdown code runs
            self.process.wait(10)


@pytest.fixture
def jobservice(tmp_path: Path) -> Iterator[JobService]:
    service = JobService(tmp_path)
    yield service
    service.kill()


def test_an_accepted_job_survives_kill_9(jobservice: JobService) -> None:
    audio = wav_bytes(1)
    pbx_file = jobservice.recordings / "alarm-1.wav"
    pbx_file.write_bytes(audio)
    body = job_body("kill-9", mode=3, recordingPath=str(pbx_file))

    jobservice.start()
    response = httpx.post(jobservice.url + "/jobs", json=body, headers=bearer(ROUTING))
    jobservice.kill()
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    pbx_file.unlink()

    jobservice.start()
    with httpx.Client(base_url=jobservice.url, headers=bearer(AGENT), timeout=5) as agent:
        jobs = agent.get("/jobs", params={"wait": 5}).json()["jobs"]
        assert [j["id"] for j in jobs] == [job_id]
        assert jobs[0]["recording"]["bytes"] == len(audio)
        assert agent.get(f"/jobs/{job_id}/recording").content == audio
    again = httpx.post(jobservice.url + "/jobs", json=body, headers=bearer(ROUTING))
    assert (again.status_code, again.json()) == (200, {"id": job_id, "created": False})


def test_a_client_still_sending_a_too_large_body_reads_the_413(jobservice: JobService) -> None:
    jobservice.start()
    chunk = b"A" * 65536

    def body() -> Iterator[bytes]:
        yield b'{"idempotencyKey": "big", "mode": 3, "recording": "'
        for _ in range(16 * 16):  # 16 MiB against the default limit of 12 MiB
            yield chunk
        yield b'"}'

    response = httpx.post(
        jobservice.url + "/jobs",
        content=body(),
        headers={**bearer(ROUTING), "Content-Type": "application/json"},
        timeout=30,
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"error": "request body larger than 12582912 bytes", "field": None}
    assert list((jobservice.root / "data" / "jobs").iterdir()) == []
    # The service is still there for the next job.
    ok = httpx.post(jobservice.url + "/jobs", json=job_body(), headers=bearer(ROUTING))
    assert ok.status_code == 201


def test_a_stop_ends_waiting_long_polls_at_once_and_cleanly(jobservice: JobService) -> None:
    import threading
    import time

    jobservice.start()
    answers: list[httpx.Response] = []

    def poll() -> None:
        answers.append(
            httpx.get(jobservice.url + "/jobs?wait=60", headers=bearer(AGENT), timeout=90)
        )

    waiting = threading.Thread(target=poll)
    waiting.start()
    time.sleep(0.5)
    assert jobservice.process is not None
    started = time.monotonic()
    jobservice.process.terminate()
    jobservice.process.wait(10)
    waiting.join(10)
    assert time.monotonic() - started < 3, "the stop waited for the long poll"
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"jobs": []})]
    assert "ERROR" not in jobservice.log.read_text()
