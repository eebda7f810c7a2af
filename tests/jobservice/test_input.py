"""Bad input to POST /jobs gets a 4xx with a reason and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.jobservice.support import (
    ROUTING,
    Service,
    alaw_wav,
    b64,
    bearer,
    header_only_wav,
    job_body,
    make_settings,
    wav_bytes,
)


def assert_refused(service: Service, response: Any, status: int, field: str | None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field, body
    assert body["error"] and "Traceback" not in response.text
    assert service.files() == [], "a refused job must leave nothing on disk"
    message: str = body["error"]
    return message


def without(key: str) -> dict[str, Any]:
    body = job_body()
    del body[key]
    return body


BAD_BODIES = [
    pytest.param([job_body()], None, "JSON object", id="array"),
    pytest.param("job", None, "JSON object", id="string"),
    pytest.param(without("idempotencyKey"), "idempotencyKey", "required", id="no-key"),
    pytest.param(job_body(key=""), "idempotencyKey", "1-128", id="empty-key"),
    pytest.param(job_body(key="a b"), "idempotencyKey", "1-128", id="key-with-space"),
    pytest.param(job_body(key="k/../x"), "idempotencyKey", "1-128", id="key-with-slash"),
    pytest.param(job_body(key="k" * 129), "idempotencyKey", "1-128", id="key-too-long"),
    pytest.param(job_body(key=17), "idempotencyKey", "1-128", id="key-number"),
    pytest.param(without("mode"), "mode", "required", id="no-mode"),
    pytest.param(job_body(mode=4), "mode", "1 (test)", id="mode-4"),
    # 0 is a stop job (issue 17); below it there is no mode.
    pytest.param(job_body(mode=-1), "mode", "1 (test)", id="mode-negative"),
    pytest.param(job_body(mode="2"), "mode", "1 (test)", id="mode-string"),
    pytest.param(job_body(mode=2.0), "mode", "1 (test)", id="mode-float"),
    pytest.param(job_body(mode=True), "mode", "1 (test)", id="mode-bool"),
    pytest.param(
        job_body(agentNumber=None, groupId=None), "agentNumber", "or groupId", id="no-target"
    ),
    pytest.param(job_body(agentNumber=231), "agentNumber", "string", id="agent-number-int"),
    pytest.param(job_body(agentNumber=""), "agentNumber", "empty", id="agent-number-empty"),
    pytest.param(job_body(groupId=["g"]), "groupId", "string", id="group-list"),
    pytest.param(without("callerNumber"), "callerNumber", "required", id="no-caller"),
    pytest.param(job_body(callerNumber=4711), "callerNumber", "string", id="caller-int"),
    pytest.param(job_body(callerName=5), "callerName", "string", id="caller-name-int"),
    # A caller's name and unusable member states are cleaned or left out, never refused:
    # tests/jobservice/test_text_guard.py (issue 14, point 1).
    pytest.param(job_body(memberStates=[1]), "memberStates", "object", id="states-list"),
    pytest.param(job_body(mode=3), "recording", "needs a recording", id="mode-3-no-audio"),
    pytest.param(
        job_body(mode=1, recording=b64(wav_bytes())), "recording", "takes no", id="mode-1-audio"
    ),
    pytest.param(
        job_body(mode=2, recordingPath="/tmp/x.wav"),
        "recordingPath",
        "takes no",
        id="mode-2-path",
    ),
    pytest.param(
        job_body(mode=3, recording=b64(wav_bytes()), recordingPath="/tmp/x.wav"),
        "recording",
        "not both",
        id="mode-3-both",
    ),
    pytest.param(job_body(mode=3, recording=12), "recording", "base64", id="audio-int"),
    pytest.param(job_body(mode=3, recording="!!!!"), "recording", "base64", id="audio-not-b64"),
    pytest.param(job_body(mode=3, recording=""), "recording", "empty", id="audio-empty"),
    pytest.param(
        job_body(mode=3, recording=b64(b"ID3\x04\x00" + b"\xff" * 2000)),
        "recording",
        "not a PCM WAV",
        id="audio-mp3",
    ),
    pytest.param(
        job_body(mode=3, recording=b64(alaw_wav())), "recording", "not a PCM WAV", id="audio-alaw"
    ),
    pytest.param(
        job_body(mode=3, recording=b64(header_only_wav())),
        "recording",
        "truncated: 0 of 16000",
        id="audio-header-only",
    ),
    pytest.param(
        job_body(mode=3, recording=b64(wav_bytes()[:-100])),
        "recording",
        "truncated",
        id="audio-cut-short",
    ),
    pytest.param(
        job_body(mode=3, recording=b64(wav_bytes(0))), "recording", "no audio frames", id="empty"
    ),
    pytest.param(
        job_body(mode=3, recording=b64(wav_bytes(121, rate=8000, width=1))),
        "recording",
        "lasts 121.0 s, longer than 120 s",
        id="audio-too-long",
    ),
]


@pytest.mark.parametrize(("body", "field", "reason"), BAD_BODIES)
async def test_it_rejects_bad_jobs_and_writes_nothing(
    service: Service, body: Any, field: str | None, reason: str
) -> None:
    message = assert_refused(service, await service.post(body), 400, field)
    assert reason in message


async def test_it_rejects_bad_json(service: Service) -> None:
    response = await service.client.post(
        "/jobs",
        content=b'{"mode": 2,',
        headers={**bearer(ROUTING), "Content-Type": "application/json"},
    )
    assert "not valid JSON" in assert_refused(service, response, 400, None)


async def test_it_rejects_bad_utf8(service: Service) -> None:
    response = await service.client.post(
        "/jobs",
        content=b'{"callerName": "\xff"}',
        headers={**bearer(ROUTING), "Content-Type": "application/json"},
    )
    assert_refused(service, response, 400, None)


async def test_it_rejects_deeply_nested_json(service: Service) -> None:
    response = await service.client.post(
        "/jobs",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={**bearer(ROUTING), "Content-Type": "application/json"},
    )
    assert_refused(service, response, 400, None)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_it_rejects_other_media_types(service: Service, content_type: str | None) -> None:
    headers = bearer(ROUTING)
    if content_type:
        headers["Content-Type"] = content_type
    response = await service.client.post("/jobs", content=b"{}", headers=headers)
    assert_refused(service, response, 415, None)


async def test_it_accepts_json_with_a_charset(service: Service) -> None:
    response = await service.post(job_body(), **{"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201


async def test_it_ignores_unknown_fields(service: Service) -> None:
    job_id = await service.accepted(job_body(priority="high", newerScriptField=[1, 2]))
    [job] = await service.poll()
    assert job["id"] == job_id
    assert "priority" not in job and "newerScriptField" not in job


# -- sizes ----------------------------------------------------------------------


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Service]:
    """Limits small enough to pass quickly: 64 KiB of audio, 128 KiB of body."""
    svc = Service.start(
        make_settings(tmp_path, max_audio_bytes=64 * 1024, max_body_bytes=128 * 1024)
    )
    yield svc
    await svc.close()


async def test_it_rejects_a_recording_over_the_audio_limit(small: Service) -> None:
    body = job_body(mode=3, recording=b64(wav_bytes(5)))  # 80 KB of audio, 107 KB of base64
    assert_refused(small, await small.post(body), 413, "recording")


async def test_it_rejects_a_streamed_body_over_the_limit_after_reading_it(small: Service) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"idempotencyKey": "big", "callerName": "'
        for _ in range(64):  # 64 x 4 KiB = twice the limit, no Content-Length
            sent += 4096
            yield b"x" * 4096
        yield b'"}'

    response = await small.client.post(
        "/jobs", content=chunks(), headers={**bearer(ROUTING), "Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert "larger than 131072 bytes" in assert_refused(small, response, 413, None)
    assert sent == 64 * 4096, "the refused body is drained, so a sending client reads the 413"


async def test_it_rejects_a_declared_length_over_the_limit(small: Service) -> None:
    response = await small.client.post(
        "/jobs",
        content=b"{" + b" " * 200_000 + b"}",
        headers={**bearer(ROUTING), "Content-Type": "application/json"},
    )
    assert_refused(small, response, 413, None)


# -- recordingPath --------------------------------------------------------------


def path_body(path: Path | str) -> dict[str, Any]:
    return job_body(mode=3, recordingPath=str(path))


async def test_it_rejects_a_path_outside_the_recordings_folder(
    service: Service, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.wav"
    outside.write_bytes(wav_bytes())
    message = assert_refused(service, await service.post(path_body(outside)), 400, "recordingPath")
    assert "outside the recordings folder" in message


async def test_it_rejects_dot_dot_out_of_the_folder(service: Service, tmp_path: Path) -> None:
    (tmp_path / "outside.wav").write_bytes(wav_bytes())
    sneaky = f"{service.recordings_dir}/../outside.wav"
    assert_refused(service, await service.post(path_body(sneaky)), 400, "recordingPath")


async def test_it_rejects_a_symlink_out_of_the_folder(service: Service, tmp_path: Path) -> None:
    (tmp_path / "secret.wav").write_bytes(wav_bytes())
    link = service.recordings_dir / "innocent.wav"
    link.symlink_to(tmp_path / "secret.wav")
    message = assert_refused(service, await service.post(path_body(link)), 400, "recordingPath")
    assert "outside" in message


async def test_it_rejects_a_symlinked_subfolder_out_of_the_folder(
    service: Service, tmp_path: Path
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.wav").write_bytes(wav_bytes())
    (service.recordings_dir / "sub").symlink_to(tmp_path / "elsewhere")
    body = path_body(service.recordings_dir / "sub" / "a.wav")
    assert_refused(service, await service.post(body), 400, "recordingPath")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.wav", "does not exist"),
        (".", "outside"),  # the folder itself
        ("folder", "not a regular file"),
        ("relative", "absolute"),
        ("bad.wav", "not a PCM WAV"),
        ("truncated.wav", "truncated"),
    ],
)
async def test_it_rejects_bad_recording_files(service: Service, name: str, reason: str) -> None:
    (service.recordings_dir / "folder").mkdir()
    (service.recordings_dir / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    (service.recordings_dir / "truncated.wav").write_bytes(header_only_wav())
    path = "recordings/x.wav" if name == "relative" else str(service.recordings_dir / name)
    message = assert_refused(service, await service.post(path_body(path)), 400, "recordingPath")
    assert reason in message


async def test_it_rejects_a_recording_file_over_the_audio_limit(small: Service) -> None:
    (small.recordings_dir / "long.wav").write_bytes(wav_bytes(5))
    response = await small.post(path_body(small.recordings_dir / "long.wav"))
    assert_refused(small, response, 413, "recordingPath")


async def test_it_refuses_paths_when_no_recordings_folder_is_set(tmp_path: Path) -> None:
    svc = Service.start(make_settings(tmp_path, recordings_dir=None))
    try:
        (tmp_path / "recordings" / "a.wav").write_bytes(wav_bytes())
        response = await svc.post(path_body(tmp_path / "recordings" / "a.wav"))
        assert "no recordings folder" in assert_refused(svc, response, 400, "recordingPath")
    finally:
        await svc.close()


async def test_it_accepts_a_symlink_that_stays_inside(service: Service) -> None:
    audio = wav_bytes()
    (service.recordings_dir / "real.wav").write_bytes(audio)
    (service.recordings_dir / "link.wav").symlink_to(service.recordings_dir / "real.wav")
    job_id = await service.accepted(path_body(service.recordings_dir / "link.wav"))
    assert (await service.recording(job_id)).content == audio
