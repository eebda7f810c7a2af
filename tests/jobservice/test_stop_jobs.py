"""A stop job (mode 0, issue 17): the call-routing script's 0 in the menu. The job service
takes and keeps it like an alarm, so a stop by phone is as durable as a trigger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from swyx_jobservice.errors import BadRequest
from swyx_jobservice.jobs import Job, JobRequest, Limits, Mode
from tests.jobservice.support import b64, job_body, wav_bytes

LIMITS = Limits(max_audio_bytes=1024 * 1024, max_recording_seconds=120)


def test_a_stop_job_is_taken_and_kept_like_any_job() -> None:
    request = JobRequest.parse(job_body(mode=0, memberStates=None), LIMITS)
    assert request.mode is Mode.STOP
    job = Job.accept(request, id=str(uuid.uuid4()), received_at=datetime.now(UTC), recording=None)
    stored = Job.parse(job.to_json())  # as the file on disk is read back
    assert stored.mode is Mode.STOP and stored.to_json()["mode"] == 0


def test_a_stop_job_carries_no_recording() -> None:
    with pytest.raises(BadRequest) as info:
        JobRequest.parse(job_body(mode=0, recording=b64(wav_bytes(1.0))), LIMITS)
    assert info.value.field == "recording"
