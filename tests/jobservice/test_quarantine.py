"""A job file that cannot be used at start: quarantined, counted in /health, listed, told."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.jobservice.support import AGENT, Service, b64, bearer, job_body, wav_bytes

STAMPED = re.compile(r"\d{8}T\d{6}Z-")


def quarantine_dir(service: Service) -> Path:
    return service.settings.data_dir / "quarantine"


async def health(service: Service) -> dict[str, Any]:
    response = await service.client.get("/health", headers=bearer(AGENT))
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def entries(service: Service) -> list[dict[str, Any]]:
    response = await service.client.get("/quarantine", headers=bearer(AGENT))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["entries"]
    return found


async def reported(service: Service, name: str) -> int:
    response = await service.client.post(f"/quarantine/{name}/reported", headers=bearer(AGENT))
    return response.status_code


def truncated(original: bytes) -> bytes:
    return original[: len(original) // 2]


def garbage(original: bytes) -> bytes:
    return bytes(range(256)) * 3


def wrong_schema(original: bytes) -> bytes:
    return json.dumps({"id": "nope", "agentNumber": "231"}).encode()


def zero_bytes(original: bytes) -> bytes:
    return b""


def deeply_nested(original: bytes) -> bytes:
    return b"[" * 100_000


DAMAGES = [truncated, garbage, wrong_schema, zero_bytes, deeply_nested]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
async def test_a_damaged_job_file_is_quarantined_with_its_bytes_and_told_by_health(
    service: Service, damage: Callable[[bytes], bytes]
) -> None:
    good = await service.accepted(job_body("k-good"))
    bad = await service.accepted(job_body("k-bad", agentNumber="232"))
    path = service.jobs_dir / f"{bad}.json"
    damaged = damage(path.read_bytes())
    path.write_bytes(damaged)

    restarted = service.restart()

    # The other alarms run on; the damaged one is neither skipped nor deleted.
    assert [j["id"] for j in await restarted.poll()] == [good]
    assert not path.exists()
    [kept] = list(quarantine_dir(service).glob("*.json"))
    assert kept.read_bytes() == damaged
    assert STAMPED.match(kept.name) and kept.name.endswith(f"-{bad}.json")
    assert await health(restarted) == {
        "status": "failing",
        "problems": ["quarantinedJobs"],
        "pendingJobs": 1,
        "quarantinedJobs": 1,
        "heldJobs": 0,
        "dataDir": True,
    }
    [entry] = await entries(restarted)
    assert entry["name"] == kept.name
    assert entry["bytes"] == len(damaged)
    assert datetime.fromisoformat(entry["triggeredAt"]) > datetime.now(UTC) - timedelta(minutes=1)
    assert datetime.fromisoformat(entry["quarantinedAt"]) > datetime.now(UTC) - timedelta(minutes=1)


async def test_a_truncated_file_still_tells_its_group_number_and_time(service: Service) -> None:
    bad = await service.accepted(job_body("k-bad", agentNumber="232", callerNumber="0711 99"))
    path = service.jobs_dir / f"{bad}.json"
    received_at = json.loads(path.read_bytes())["receivedAt"]
    text = path.read_bytes()
    path.write_bytes(text[: text.index(b'"idempotencyKey"')])

    [entry] = await entries(service.restart())

    assert entry["agentNumber"] == "232"
    assert entry["callerNumber"] == "0711 99"
    assert entry["mode"] == 2
    assert entry["triggeredAt"] == received_at
    assert entry["recording"] is False


async def test_a_recorded_alarm_keeps_its_recording_in_quarantine(service: Service) -> None:
    audio = wav_bytes()
    bad = await service.accepted(job_body("k-rec", mode=3, recording=b64(audio)))
    (service.jobs_dir / f"{bad}.json").write_bytes(b'{"mode": 3, "agentNumber": "231"')

    [entry] = await entries(service.restart())

    assert entry["recording"] is True
    wav = quarantine_dir(service) / entry["name"].replace(".json", ".wav")
    assert wav.read_bytes() == audio
    assert service.files() == sorted([f"quarantine/{entry['name']}", f"quarantine/{wav.name}"])


async def test_a_job_whose_recording_is_missing_is_quarantined(service: Service) -> None:
    bad = await service.accepted(job_body("k-rec", mode=3, recording=b64(wav_bytes())))
    (service.jobs_dir / f"{bad}.wav").unlink()

    restarted = service.restart()

    assert await restarted.poll() == []
    assert (await health(restarted))["quarantinedJobs"] == 1


async def test_health_clears_once_the_agent_has_reported_and_the_bytes_stay(
    service: Service,
) -> None:
    bad = await service.accepted(job_body("k-bad"))
    (service.jobs_dir / f"{bad}.json").write_bytes(b"{")
    restarted = service.restart()
    [entry] = await entries(restarted)

    assert await reported(restarted, entry["name"]) == 204

    assert (await health(restarted))["status"] == "ok"
    assert await entries(restarted) == []
    assert (quarantine_dir(service) / "reported" / entry["name"]).read_bytes() == b"{"
    # A repeat (the answer was lost) is fine; a restart does not list it again.
    assert await reported(restarted, entry["name"]) == 204
    again = restarted.restart()
    assert await entries(again) == []
    assert (await health(again))["status"] == "ok"


async def test_an_operator_removing_the_file_clears_it_too(service: Service) -> None:
    bad = await service.accepted(job_body("k-bad"))
    (service.jobs_dir / f"{bad}.json").write_bytes(b"")
    restarted = service.restart()
    [entry] = await entries(restarted)
    (quarantine_dir(service) / entry["name"]).unlink()

    assert await entries(restarted) == []
    assert (await health(restarted))["status"] == "ok"


@pytest.mark.parametrize("name", ["nothing.json", "..json", "x", f"{uuid.uuid4()}.wav"])
async def test_marking_an_unknown_entry_reported_is_404(service: Service, name: str) -> None:
    assert await reported(service, name) == 404


async def test_a_file_still_being_written_is_not_quarantined(service: Service) -> None:
    # Jobs are written under a temporary name and renamed: such a file is no job yet
    # (a crash leftover at start, removed as before), never a damaged one.
    job_id = await service.accepted(job_body())
    (service.jobs_dir / f".{uuid.uuid4()}.json.a1b2c3").write_bytes(b'{"id": ')
    restarted = service.restart()
    assert await entries(restarted) == []
    assert (await health(restarted))["status"] == "ok"
    assert [j["id"] for j in await restarted.poll()] == [job_id]


async def test_health_counts_no_quarantine_on_a_clean_start(service: Service) -> None:
    body = await health(service)
    assert (body["status"], body["quarantinedJobs"]) == ("ok", 0)
