"""Jobs and recordings as pure values: parsing, exact errors, the round trip."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from swyx_jobservice.audio import Recording, inspect_wav
from swyx_jobservice.errors import BadRequest, PayloadTooLarge
from swyx_jobservice.jobs import Job, JobRequest, Limits, Mode, differences
from tests.jobservice.support import b64, header_only_wav, job_body, wav_bytes

LIMITS = Limits(max_audio_bytes=1024 * 1024, max_recording_seconds=120)


def accepted(body: dict[str, Any]) -> Job:
    request = JobRequest.parse(body, LIMITS)
    return Job.accept(
        request,
        id=str(uuid.uuid4()),
        received_at=datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        recording=request.audio.recording if request.audio else None,
    )


def test_a_request_parses_into_typed_fields() -> None:
    request = JobRequest.parse(job_body(mode=1), LIMITS)
    assert request.mode is Mode.TEST
    assert (request.agent_number, request.caller_name) == ("231", "Pförtner")
    assert request.member_states == {"17": 0, "18": 3}
    assert request.audio is None and request.recording_path is None


def test_a_recorded_message_is_checked_while_parsing() -> None:
    audio = wav_bytes(1)
    request = JobRequest.parse(job_body(mode=3, recording=b64(audio)), LIMITS)
    assert request.audio is not None and request.audio.data == audio
    assert request.audio.recording.duration_ms == 1000


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"mode": 2}, "idempotencyKey is required"),
        (job_body(mode=7), "mode must be 1 (test), 2 (alarm, stored message) or 3 (alarm, "),
        (job_body(callerNumber=None), "callerNumber is required"),
        (job_body(mode=3), "mode 3 needs a recording or a recordingPath"),
        (job_body(mode=2, recording="AAAA"), "mode 2 takes no recording"),
    ],
)
def test_it_names_what_is_wrong(body: dict[str, Any], error: str) -> None:
    with pytest.raises(BadRequest) as info:
        JobRequest.parse(body, LIMITS)
    assert info.value.message.startswith(error)


def test_the_size_is_checked_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        JobRequest.parse(job_body(mode=3, recording="A" * 2_000_000), LIMITS)
    assert info.value.field == "recording"


@pytest.mark.parametrize(
    "body",
    [
        job_body(),
        job_body(mode=1, agentNumber=None, groupId="g", callerName=None, memberStates=None),
        job_body(mode=3, recording=b64(wav_bytes(0.25))),
        job_body(mode=3, recordingPath="/var/swyx/rec/a.wav"),
    ],
)
def test_a_job_survives_the_round_trip_through_json(body: dict[str, Any]) -> None:
    job = accepted(body)
    if body.get("recordingPath"):
        job = Job.accept(
            JobRequest.parse(body, LIMITS),
            id=job.id,
            received_at=job.received_at,
            recording=Recording("ab" * 32, 100, 50),
        )
    assert Job.parse(job.to_json()) == job
    assert job.to_json()["receivedAt"] == "2025-03-01T12:00:00.123456+00:00"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"id": "1234"}, "id must be a UUID4 string"),
        ({"id": str(uuid.uuid1())}, "id must be a UUID4 string"),
        ({"receivedAt": "2025-03-01T12:00:00"}, "receivedAt must be an ISO date-time"),
        ({"receivedAt": "yesterday"}, "receivedAt must be an ISO date-time"),
        ({"recording": {"sha256": "x", "bytes": 1, "durationMs": 1}}, "recording.sha256"),
        ({"mode": 3}, "mode 3 jobs, and only they, have a recording"),
    ],
)
def test_a_damaged_job_file_is_refused_precisely(change: dict[str, Any], error: str) -> None:
    data = accepted(job_body()).to_json() | change
    with pytest.raises(BadRequest) as info:
        Job.parse(data)
    assert info.value.message.startswith(error)


def test_differences_name_the_changed_fields() -> None:
    job = accepted(job_body())
    assert differences(job, JobRequest.parse(job_body(), LIMITS)) == []
    other = JobRequest.parse(job_body(callerName="X", agentNumber="9"), LIMITS)
    assert differences(job, other) == ["agentNumber", "callerName"]


def test_unknown_fields_are_not_kept() -> None:
    job = accepted(job_body(extra=1))
    assert "extra" not in job.to_json()


def test_inspect_wav_measures_a_pcm_wav() -> None:
    audio = wav_bytes(2.5, rate=16000)
    recording = inspect_wav(audio, max_bytes=10**6, max_seconds=3, field="f")
    assert (recording.bytes, recording.duration_ms) == (len(audio), 2500)


def test_inspect_wav_counts_the_frames_really_there() -> None:
    with pytest.raises(BadRequest) as info:
        inspect_wav(header_only_wav(1), max_bytes=10**6, max_seconds=3, field="f")
    assert info.value.message == "recording is truncated: 0 of 8000 audio frames present"
    assert info.value.field == "f"
