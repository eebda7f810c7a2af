"""Audio uploads (POST /api/uploads), playback (GET /api/audio/<id>) and setAnnouncement."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import struct
import uuid
import wave
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.app import create_app
from api.models import Announcement, AnnouncementStatus, AudioBlob, Command, Language
from api.runtime import Runtime
from api.services import announcements
from tests.conftest import error_codes, make_settings
from tests.world import PASSWORD, wav_bytes

SET_ANNOUNCEMENT = """
mutation($group: ID!, $upload: ID!) {
  setAnnouncement(groupId: $group, kind: ALARM, uploadId: $upload) {
    announcement { id kind source status durationMs sha256 downloadUrl telephonyUrl }
    command { type status payload }
  }
}
"""


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def blob_count(rt: Runtime) -> int:
    async with rt.db.reading() as s:
        return int(await s.scalar(select(func.count()).select_from(AudioBlob)) or 0)


async def upload(
    client: httpx.AsyncClient,
    data: Any,
    token: str | None = None,
    content_type: str | None = "audio/wav",
) -> httpx.Response:
    headers = bearer(token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await client.post("/api/uploads", content=data, headers=headers)


async def set_announcement(gql, token: str, group: Any, upload_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await gql.as_(token)(
        SET_ANNOUNCEMENT, group=str(group), upload=upload_id
    )
    return body


def assert_refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    reason: dict[str, Any] = response.json()
    assert isinstance(reason.get("error"), str) and reason["error"], reason
    return reason


# --------------------------------------------------------------------------- the happy path


async def test_upload_set_announcement_and_play_it_back(client, gql, rt, world):
    owner = world.tokens["owner"]
    data = wav_bytes(seconds=1.25)
    before = await blob_count(rt)

    response = await upload(client, data, owner)
    assert response.status_code == 201, response.text
    stored = response.json()
    upload_id = stored["id"]
    assert uuid.UUID(upload_id)
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored["durationMs"] == 1250
    assert stored["sizeBytes"] == len(data)
    # 8 kHz mono 16-bit in a plain header is its own telephony master: stored once.
    assert stored["telephony"] == {k: v for k, v in stored.items() if k != "telephony"}
    assert await blob_count(rt) == before + 1

    body = await set_announcement(gql, owner, world.a.group_id, upload_id)
    assert not body.get("errors"), body["errors"]
    change = body["data"]["setAnnouncement"]
    announcement, command = change["announcement"], change["command"]
    assert announcement == {
        # The group's alarm announcement is replaced, not added beside it.
        "id": str(world.a.announcement_id),
        "kind": "ALARM",
        "source": "UPLOAD",
        "status": "READY",
        "durationMs": 1250,
        "sha256": stored["sha256"],
        "downloadUrl": f"/api/audio/{upload_id}",
        "telephonyUrl": f"/api/audio/{upload_id}",
    }
    assert command["type"] == "setAnnouncement"
    assert command["status"] == "PENDING"
    assert command["payload"]["audioId"] == upload_id
    assert command["payload"]["sha256"] == stored["sha256"]
    assert command["payload"]["durationMs"] == 1250

    for token in (owner, world.tokens["viewer"]):
        played = await client.get(announcement["downloadUrl"], headers=bearer(token))
        assert played.status_code == 200, played.text
        assert played.content == data
        assert played.headers["content-type"] == "audio/wav"
        assert played.headers["etag"] == f'"{stored["sha256"]}"'
        assert played.headers["x-content-type-options"] == "nosniff"
        assert "private" in played.headers["cache-control"]

    # The group shows it too.
    groups = await gql.as_(owner).ok(
        "{ groups { id broadcast { announcements { kind downloadUrl } } } }"
    )
    (group,) = [g for g in groups["groups"] if g["id"] == str(world.a.group_id)]
    assert {"kind": "ALARM", "downloadUrl": f"/api/audio/{upload_id}"} in group["broadcast"][
        "announcements"
    ]


@pytest.mark.parametrize("content_type", ["audio/x-wav", "audio/wave", "Audio/WAV; codecs=1"])
async def test_other_names_of_wav_are_accepted(client, rt, world, content_type):
    response = await upload(client, wav_bytes(), world.tokens["owner"], content_type)
    assert response.status_code == 201, response.text


# --------------------------------------------------------------------------- bad input


def _not_wav() -> bytes:
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8


def _header_only() -> bytes:
    return wav_bytes()[:44]


def _too_slow() -> bytes:
    return wav_bytes(seconds=0.5, rate=4000)


def _wav(frames: bytes, rate: int = 8000, channels: int = 1, bits: int = 16, tag: int = 1):
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(frames))
    return b"RIFF" + struct.pack("<I", 4 + len(body) + len(frames)) + b"WAVE" + body + frames


def _tone(rate: int, seconds: float, frequency: float, channels: int) -> bytes:
    samples = [
        round(12000 * math.sin(2 * math.pi * frequency * i / rate))
        for i in range(int(rate * seconds))
        for _ in range(channels)
    ]
    return _wav(struct.pack(f"<{len(samples)}h", *samples), rate, channels)


def _samples(master: bytes) -> list[int]:
    with wave.open(io.BytesIO(master)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        return list(struct.unpack(f"<{w.getnframes()}h", w.readframes(w.getnframes())))


BAD_BODIES = {
    "not a WAV": (_not_wav(), "audio/wav", "file"),
    "empty": (b"", "audio/wav", "file"),
    "an unsupported sample rate": (_too_slow(), "audio/wav", "file"),
    "text/plain": (wav_bytes(), "text/plain", "Content-Type"),
    "form": (wav_bytes(), "application/x-www-form-urlencoded", "Content-Type"),
    "multipart": (wav_bytes(), "multipart/form-data; boundary=x", "Content-Type"),
    "octet-stream": (wav_bytes(), "application/octet-stream", "Content-Type"),
    "no Content-Type": (wav_bytes(), None, "Content-Type"),
}


TRUNCATED = pytest.param(
    _header_only(),
    "audio/wav",
    "file",
    id="a WAV header without its sound",
)


@pytest.mark.parametrize(
    ("data", "content_type", "field"),
    [*[pytest.param(*v, id=k) for k, v in BAD_BODIES.items()], TRUNCATED],
)
async def test_bad_uploads_are_refused_and_write_nothing(
    client, rt, world, data, content_type, field
):
    before = await blob_count(rt)
    response = await upload(client, data, world.tokens["owner"], content_type)
    reason = assert_refused(response, 400)
    assert reason["code"] == "BAD_USER_INPUT"
    assert reason["field"] == field
    assert await blob_count(rt) == before


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(_not_wav(), "not a WAV file (no RIFF/WAVE header)", id="not RIFF/WAVE"),
        pytest.param(
            _wav(b"\0" * 4000, tag=0x55),
            "MP3 WAV is not accepted; save it as PCM, A-law or μ-law WAV",
            id="MP3 in WAV",
        ),
        pytest.param(
            _wav(b"\0" * 4000, tag=3, bits=32),
            "32-bit float WAV is not accepted; save it as PCM, A-law or μ-law WAV",
            id="float",
        ),
        pytest.param(_wav(b""), "the recording holds no sound", id="zero frames"),
        pytest.param(
            _header_only(), "the file ends before its sound does (truncated WAV)", id="truncated"
        ),
        pytest.param(
            _wav(b"\0" * 600, channels=3),
            "3 channels; only mono or stereo is accepted",
            id="3 channels",
        ),
        pytest.param(_too_slow(), "sample rate 4000 Hz not supported (8000 to 192000)", id="4 kHz"),
    ],
)
async def test_it_refuses_what_cannot_be_decoded_with_the_reason(client, rt, world, data, reason):
    before = await blob_count(rt)
    response = await upload(client, data, world.tokens["owner"])
    assert assert_refused(response, 400) == {
        "error": reason,
        "code": "BAD_USER_INPUT",
        "field": "file",
    }
    assert await blob_count(rt) == before


async def test_a_real_multipart_upload_is_refused(client, rt, world):
    before = await blob_count(rt)
    response = await client.post(
        "/api/uploads",
        files={"file": ("alarm.wav", wav_bytes(), "audio/wav")},
        headers=bearer(world.tokens["owner"]),
    )
    assert assert_refused(response, 400)["field"] == "Content-Type"
    assert await blob_count(rt) == before


async def test_a_recording_longer_than_the_limit_is_refused(client, rt, world):
    limit = rt.settings.announcement_max_seconds
    assert limit == 300
    before = await blob_count(rt)
    response = await upload(client, wav_bytes(seconds=limit + 1), world.tokens["owner"])
    reason = assert_refused(response, 400)
    assert reason["error"] == f"longer than {limit} s"
    assert await blob_count(rt) == before

    # Exactly the limit is fine.
    response = await upload(client, wav_bytes(seconds=limit), world.tokens["owner"])
    assert response.status_code == 201, response.text
    assert response.json()["durationMs"] == limit * 1000


async def small_upload_limit_client(rt: Runtime) -> httpx.AsyncClient:
    custom = dataclasses.replace(rt, settings=make_settings(upload_max_bytes=2048))
    transport = httpx.ASGITransport(app=create_app(custom), client=("198.51.100.7", 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


async def test_a_body_over_upload_max_bytes_gets_413(rt, world):
    owner = world.tokens["owner"]
    before = await blob_count(rt)
    async with await small_upload_limit_client(rt) as c:
        big = wav_bytes(seconds=0.2)  # 44 + 3,200 bytes
        response = await upload(c, big, owner)
        assert response.status_code == 413, response.text
        assert response.json() == {
            "error": "request body larger than 2048 bytes",
            "code": "PAYLOAD_TOO_LARGE",
        }
        assert await blob_count(rt) == before

        fits = wav_bytes(seconds=0.125)  # 44 + 2,000 bytes
        assert len(fits) <= 2048
        response = await upload(c, fits, owner)
        assert response.status_code == 201, response.text
        assert await blob_count(rt) == before + 1


async def test_a_streamed_body_over_upload_max_bytes_gets_413(rt, world):
    data = wav_bytes(seconds=0.5)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 1024):
            yield data[start : start + 1024]

    before = await blob_count(rt)
    async with await small_upload_limit_client(rt) as c:
        response = await upload(c, chunks(), world.tokens["owner"])
    assert "content-length" not in response.request.headers
    assert await blob_count(rt) == before
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"


# --------------------------------------------------------------------------- who may


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        (None, 401, "UNAUTHENTICATED"),
        ("rds_not-a-session", 401, "UNAUTHENTICATED"),
        ("viewer", 403, "FORBIDDEN"),
        ("platform", 403, "FORBIDDEN"),
    ],
    ids=["no token", "bad token", "viewer", "platform admin"],
)
async def test_only_tenant_admins_may_upload(client, rt, world, who, status, code):
    token = world.tokens.get(who, who) if who else None
    before = await blob_count(rt)
    response = await upload(client, wav_bytes(), token)
    reason = assert_refused(response, status)
    assert reason["code"] == code
    assert await blob_count(rt) == before


async def test_playback_needs_a_session(client, world):
    response = await client.get(f"/api/audio/{world.a.audio_id}")
    assert assert_refused(response, 401)["code"] == "UNAUTHENTICATED"


async def test_an_outsider_cannot_play_another_tenants_audio(client, world):
    outsider = bearer(world.tokens["outsider"])
    foreign = await client.get(f"/api/audio/{world.a.audio_id}", headers=outsider)
    assert assert_refused(foreign, 404)["code"] == "NOT_FOUND"
    assert foreign.content != wav_bytes()
    # Exactly as for audio that does not exist, so ids cannot be probed.
    missing = await client.get(f"/api/audio/{uuid.uuid4()}", headers=outsider)
    assert missing.status_code == 404
    assert missing.json() == foreign.json()
    assert (await client.get("/api/audio/not-a-uuid", headers=outsider)).status_code == 404
    # The outsider's own audio plays.
    own = await client.get(f"/api/audio/{world.b.audio_id}", headers=outsider)
    assert own.status_code == 200


async def test_an_outsider_cannot_use_another_tenants_upload(client, gql, rt, world):
    response = await upload(client, wav_bytes(seconds=0.75), world.tokens["owner"])
    assert response.status_code == 201
    upload_id = response.json()["id"]
    outsider = world.tokens["outsider"]

    # Not even for the outsider's own broadcast group.
    body = await set_announcement(gql, outsider, world.b.group_id, upload_id)
    assert body["data"] is None
    assert error_codes(body) == ["NOT_FOUND"]
    assert body["errors"][0]["extensions"].get("field") == "uploadId"
    # Nor for the owner's group.
    body = await set_announcement(gql, outsider, world.a.group_id, upload_id)
    assert error_codes(body) == ["NOT_FOUND"]
    # Nor can they play it.
    played = await client.get(f"/api/audio/{upload_id}", headers=bearer(outsider))
    assert played.status_code == 404

    async with rt.db.reading() as s:
        audio_ids = set(await s.scalars(select(Announcement.audio_id)))
    assert uuid.UUID(upload_id) not in audio_ids


async def test_a_viewer_cannot_set_an_announcement(client, gql, world):
    response = await upload(client, wav_bytes(), world.tokens["owner"])
    body = await set_announcement(
        gql, world.tokens["viewer"], world.a.group_id, response.json()["id"]
    )
    assert error_codes(body) == ["FORBIDDEN"]


async def test_an_upload_id_that_names_nothing_is_not_found(gql, world):
    for upload_id in (str(uuid.uuid4()), "not-a-uuid"):
        body = await set_announcement(gql, world.tokens["owner"], world.a.group_id, upload_id)
        assert error_codes(body) == ["NOT_FOUND"], body


# --------------------------------------------------------------------------- cookies


async def test_the_session_cookie_works_for_upload_and_playback(client, gql, rt, world):
    login = await client.post(
        "/graphql",
        json={
            "query": (
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
            ),
            "variables": {"e": world.a.admin_email, "p": PASSWORD},
        },
    )
    assert login.status_code == 200, login.text
    cookie = login.headers["set-cookie"].lower()
    for attribute in ("rundruf_session=", "httponly", "secure", "samesite=strict"):
        assert attribute in cookie
    assert client.cookies.get("rundruf_session")

    data = wav_bytes(seconds=0.3)
    response = await upload(client, data)  # no Authorization header: the cookie alone
    assert response.status_code == 201, response.text
    upload_id = response.json()["id"]

    body = await gql.ok(SET_ANNOUNCEMENT, group=str(world.a.group_id), upload=upload_id)
    url = body["setAnnouncement"]["announcement"]["downloadUrl"]
    played = await client.get(url)
    assert played.status_code == 200
    assert played.content == data

    # Without the cookie the same requests are refused.
    client.cookies.clear()
    assert (await upload(client, data)).status_code == 401
    assert (await client.get(url)).status_code == 401


# --------------------------------------------------------------------------- telephony master


async def test_a_48khz_stereo_upload_is_kept_and_sent_to_the_agent_as_its_master(
    client, gql, rt, world
):
    owner = world.tokens["owner"]
    data = _tone(48000, 1.0, 1000, channels=2)
    before = await blob_count(rt)

    response = await upload(client, data, owner)
    assert response.status_code == 201, response.text
    stored = response.json()
    master = stored["telephony"]
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored["sizeBytes"] == len(data)
    assert master["id"] != stored["id"]
    assert master["durationMs"] == stored["durationMs"] == 1000
    assert master["sizeBytes"] == 44 + 2 * 8000
    assert await blob_count(rt) == before + 2

    # The file as sent plays back byte for byte; the master is WAV PCM 16-bit mono 8 kHz.
    original = await client.get(f"/api/audio/{stored['id']}", headers=bearer(owner))
    assert original.content == data
    telephony = await client.get(f"/api/audio/{master['id']}", headers=bearer(owner))
    assert telephony.status_code == 200
    assert hashlib.sha256(telephony.content).hexdigest() == master["sha256"]
    samples = _samples(telephony.content)
    assert len(samples) == 8000
    assert max(samples[400:-400]) == pytest.approx(12000, abs=120)

    change = (
        await gql.as_(owner).ok(SET_ANNOUNCEMENT, group=str(world.a.group_id), upload=stored["id"])
    )["setAnnouncement"]
    announcement, payload = change["announcement"], change["command"]["payload"]
    assert announcement["downloadUrl"] == f"/api/audio/{stored['id']}"
    assert announcement["telephonyUrl"] == f"/api/audio/{master['id']}"
    assert announcement["sha256"] == stored["sha256"]
    # The agent fetches the master and checks it against this checksum.
    assert payload["audioId"] == master["id"]
    assert payload["sha256"] == master["sha256"]
    assert payload["durationMs"] == master["durationMs"]
    async with rt.db.reading() as s:
        ann = await s.get(Announcement, uuid.UUID(announcement["id"]))
        assert ann is not None
        assert (ann.audio_id, ann.telephony_id) == (
            uuid.UUID(stored["id"]),
            uuid.UUID(master["id"]),
        )

    agent = await client.get(
        f"/api/audio/{payload['audioId']}", headers=bearer(world.tokens["agent_a"])
    )
    assert agent.status_code == 200
    assert hashlib.sha256(agent.content).hexdigest() == payload["sha256"]


async def test_a_mulaw_upload_is_accepted_and_decoded(client, rt, world):
    codes = bytes([0x00, 0x7F, 0x80, 0xEF, 0xFF] * 400)
    data = _wav(codes, bits=8, tag=7)
    response = await upload(client, data, world.tokens["owner"])
    assert response.status_code == 201, response.text
    master = response.json()["telephony"]
    played = await client.get(f"/api/audio/{master['id']}", headers=bearer(world.tokens["owner"]))
    assert _samples(played.content) == [-32124, 0, 32124, 132, 0] * 400


async def test_outsiders_cannot_reach_the_master_of_another_tenants_upload(client, world):
    response = await upload(client, _tone(16000, 0.5, 440, channels=1), world.tokens["owner"])
    master_url = f"/api/audio/{response.json()['telephony']['id']}"
    for who in ("outsider", "agent_b"):
        played = await client.get(master_url, headers=bearer(world.tokens[who]))
        assert assert_refused(played, 404)["code"] == "NOT_FOUND"
    for who in ("viewer", "agent_a"):
        assert (await client.get(master_url, headers=bearer(world.tokens[who]))).status_code == 200


async def test_an_upload_stored_before_masters_existed_must_be_sent_again(gql, rt, world):
    async with rt.db.transaction() as s:
        blob = await s.get(AudioBlob, world.a.audio_id)
        assert blob is not None
        blob.telephony_id = None
    body = await set_announcement(gql, world.tokens["owner"], world.a.group_id, str(blob.id))
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "uploadId"
    assert body["errors"][0]["message"] == (
        "this upload predates telephony masters; upload the file again"
    )


# --------------------------------------------------------------------------- synthesised audio

SYNTHESIZE = """
mutation($group: ID!, $text: String!) {
  synthesizeAnnouncement(groupId: $group, kind: TEST, text: $text, language: DE) {
    announcement { id status }
  }
}
"""


async def _pending(gql, world, text: str = "Dies ist ein Probealarm.") -> uuid.UUID:
    body = await gql.as_(world.tokens["owner"]).ok(
        SYNTHESIZE, group=str(world.a.group_id), text=text
    )
    assert body["synthesizeAnnouncement"]["announcement"]["status"] == "PENDING"
    return uuid.UUID(body["synthesizeAnnouncement"]["announcement"]["id"])


async def _set_commands(rt: Runtime) -> list[Command]:
    async with rt.db.reading() as s:
        return list(await s.scalars(select(Command).where(Command.type == "setAnnouncement")))


async def test_synthesised_audio_is_stored_like_an_upload_and_sent_as_its_master(gql, rt, world):
    text = "Dies ist ein Probealarm."
    ann_id = await _pending(gql, world, text)
    data = _tone(22050, 0.8, 500, channels=1)  # what espeak-ng writes
    before = await blob_count(rt)

    ann = await announcements.store_synthesised(rt, ann_id, text, Language.DE, data)
    assert ann is not None and ann.status is AnnouncementStatus.READY
    assert await blob_count(rt) == before + 2
    async with rt.db.reading() as s:
        original = await s.get(AudioBlob, ann.audio_id)
        master = await s.get(AudioBlob, ann.telephony_id)
    assert original is not None and master is not None
    assert original.sha256 == hashlib.sha256(data).hexdigest() == ann.sha256
    assert (original.telephony_id, master.telephony_id) == (master.id, master.id)
    assert master.duration_ms == 800
    (command,) = await _set_commands(rt)
    assert command.created_by is None
    assert command.payload["audioId"] == str(master.id)
    assert command.payload["sha256"] == master.sha256

    # A repeated call (the worker retrying) changes nothing.
    assert await announcements.store_synthesised(rt, ann_id, text, Language.DE, data) is None
    assert await blob_count(rt) == before + 2
    assert len(await _set_commands(rt)) == 1


async def test_synthesised_audio_that_cannot_be_decoded_fails_the_announcement(gql, rt, world):
    text = "Achtung."
    ann_id = await _pending(gql, world, text)
    before = await blob_count(rt)
    ann = await announcements.store_synthesised(rt, ann_id, text, Language.DE, b"OggS" + bytes(64))
    assert ann is not None and ann.status is AnnouncementStatus.FAILED
    assert ann.error == "the synthesised audio is unusable: not a WAV file (no RIFF/WAVE header)"
    assert await blob_count(rt) == before
    assert await _set_commands(rt) == []


async def test_synthesised_audio_over_the_size_limit_fails_the_announcement(gql, rt, world):
    ann_id = await _pending(gql, world, "Achtung.")
    small = dataclasses.replace(rt, settings=make_settings(upload_max_bytes=2048))
    ann = await announcements.store_synthesised(
        small, ann_id, "Achtung.", Language.DE, wav_bytes(seconds=0.2)
    )
    assert ann is not None and ann.status is AnnouncementStatus.FAILED
    assert ann.error == "the synthesised audio is unusable: larger than 2048 bytes"


async def test_synthesised_audio_for_text_changed_meanwhile_is_dropped(gql, rt, world):
    ann_id = await _pending(gql, world, "Erster Text.")
    await _pending(gql, world, "Zweiter Text.")
    before = await blob_count(rt)
    late = await announcements.store_synthesised(
        rt, ann_id, "Erster Text.", Language.DE, wav_bytes()
    )
    assert late is None
    assert await blob_count(rt) == before
    assert (
        await announcements.store_synthesised(rt, uuid.uuid4(), "x", Language.DE, wav_bytes())
        is None
    )
