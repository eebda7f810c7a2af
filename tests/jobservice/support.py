"""Helpers for the job service tests: WAV files, settings, the app over ASGI."""

from __future__ import annotations

import base64
import io
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from swyx_jobservice.app import create_app
from swyx_jobservice.settings import JobServiceSettings

AGENT = "agent-token-0123456789"
ROUTING = "routing-token-0123456789"


def wav_bytes(seconds: float = 0.5, rate: int = 8000, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x10" * width * int(seconds * rate))
    return buffer.getvalue()


def header_only_wav(seconds: float = 2.0) -> bytes:
    """A header promising frames that never came (a PBX still writing the file)."""
    full = wav_bytes(seconds)
    return full[:44]


def alaw_wav() -> bytes:
    """A WAV header with format tag 6 (A-law): a WAV, but not PCM."""
    data = bytearray(wav_bytes(0.5, width=1))
    data[20:22] = struct.pack("<H", 6)
    return bytes(data)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def job_body(key: str = "call-1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agentNumber": "231",
        "groupId": None,
        "mode": 2,
        "callerNumber": "0711 4711",
        "callerName": "Pförtner",
        "idempotencyKey": key,
        "recording": None,
        "recordingPath": None,
        "memberStates": {"17": 0, "18": 3},
    }
    body.update(fields)
    return body


def make_settings(root: Path, **overrides: Any) -> JobServiceSettings:
    values: dict[str, Any] = {
        "data_dir": root / "data",
        "recordings_dir": root / "recordings",
        "agent_token": AGENT,
        "routing_token": ROUTING,
    }
    values.update(overrides)
    (root / "recordings").mkdir(exist_ok=True)
    return JobServiceSettings(**values)


@dataclass
class Service:
    """One app instance over a data folder, driven through httpx.ASGITransport."""

    settings: JobServiceSettings
    app: Starlette
    client: httpx.AsyncClient

    @classmethod
    def start(cls, settings: JobServiceSettings) -> Service:
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        return cls(settings, app, httpx.AsyncClient(transport=transport, base_url="http://jobs"))

    def restart(self) -> Service:
        """A new app on the same data folder, as after a restart of the process."""
        return Service.start(self.settings)

    @property
    def jobs_dir(self) -> Path:
        return self.settings.data_dir / "jobs"

    @property
    def done_dir(self) -> Path:
        return self.settings.data_dir / "done"

    @property
    def recordings_dir(self) -> Path:
        assert self.settings.recordings_dir is not None
        return self.settings.recordings_dir

    def files(self) -> list[str]:
        """Everything in the data folder (temporary files included)."""
        return sorted(
            str(p.relative_to(self.settings.data_dir))
            for p in self.settings.data_dir.rglob("*")
            if p.is_file()
        )

    async def post(self, body: Any, token: str | None = ROUTING, **headers: str) -> httpx.Response:
        return await self.client.post("/jobs", json=body, headers={**bearer(token), **headers})

    async def accepted(self, body: Any) -> str:
        response = await self.post(body)
        assert response.status_code == 201, response.text
        job_id: str = response.json()["id"]
        return job_id

    async def poll(self, wait: float = 0, token: str = AGENT) -> list[dict[str, Any]]:
        response = await self.client.get(f"/jobs?wait={wait}", headers=bearer(token))
        assert response.status_code == 200, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs

    async def delete(self, job_id: str, token: str = AGENT) -> httpx.Response:
        return await self.client.delete(f"/jobs/{job_id}", headers=bearer(token))

    async def recording(self, job_id: str, token: str = AGENT) -> httpx.Response:
        return await self.client.get(f"/jobs/{job_id}/recording", headers=bearer(token))

    async def close(self) -> None:
        await self.client.aclose()
