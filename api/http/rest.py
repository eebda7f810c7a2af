"""The few plain HTTP endpoints beside GraphQL: health, audio upload and playback.

Uploads are raw request bodies rather than GraphQL multipart requests (see
docs/decisions/audio-upload.md): a browser can only send a non-safelisted
Content-Type such as audio/wav cross-site after a CORS preflight, which this
service never grants, and the session cookie is SameSite=Strict.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.errors import BadInput, Forbidden, NotFound, RundrufError, Unauthenticated
from api.models import AudioBlob
from api.runtime import Runtime
from api.services import agents, announcements, auth
from api.services.actor import Actor, Scope

UPLOAD_TYPES = {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}
_STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "BAD_USER_INPUT": 400,
    "CONFLICT": 409,
    "TOO_MANY_ATTEMPTS": 429,
}


def error_response(err: RundrufError) -> JSONResponse:
    return JSONResponse(
        {"error": err.message, **err.extensions}, status_code=_STATUS.get(err.code, 400)
    )


def _token(rt: Runtime, request: Request) -> str:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    token = token or request.cookies.get(rt.settings.session_cookie_name)
    if not token:
        raise Unauthenticated("sign in first")
    return token


async def _actor(rt: Runtime, request: Request) -> Actor:
    token = _token(rt, request)
    if token.startswith(agents.AGENT_TOKEN_PREFIX):
        raise Forbidden("agents cannot upload")
    return await auth.actor_for_token(rt, token)


async def _reader(rt: Runtime, request: Request) -> Scope:
    """Who may play audio: signed-in users, and the tenant's agent (for its cache)."""
    token = _token(rt, request)
    if token.startswith(agents.AGENT_TOKEN_PREFIX):
        agent = await agents.agent_for_token(rt, token)
        return Scope(agent.tenant_id)
    return (await auth.actor_for_token(rt, token)).read_scope()


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def upload_audio(request: Request) -> Response:
    rt = _runtime(request)
    try:
        actor = await _actor(rt, request)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in UPLOAD_TYPES:
            raise BadInput(
                f"send the file as the raw body with Content-Type {sorted(UPLOAD_TYPES)[0]}",
                field="Content-Type",
            )
        data = await request.body()
        original, master = await announcements.store_upload(rt, actor, data, content_type)
    except RundrufError as err:
        return error_response(err)
    # `id` is the file as sent (setAnnouncement's uploadId); `telephony` is the
    # master made of it (WAV, PCM 16-bit, mono, 8 kHz), which the agent plays.
    return JSONResponse({**_blob_json(original), "telephony": _blob_json(master)}, status_code=201)


def _blob_json(blob: AudioBlob) -> dict[str, Any]:
    return {
        "id": str(blob.id),
        "sha256": blob.sha256,
        "durationMs": blob.duration_ms,
        "sizeBytes": blob.size_bytes,
    }


async def download_audio(request: Request) -> Response:
    rt = _runtime(request)
    try:
        scope = await _reader(rt, request)
        try:
            blob_id = uuid.UUID(request.path_params["audio_id"])
        except ValueError:
            raise NotFound("audio not found") from None
        blob = await announcements.audio_bytes(rt, scope, blob_id)
    except RundrufError as err:
        return error_response(err)
    return Response(
        blob.data,
        media_type=blob.content_type,
        headers={
            "Cache-Control": "private, max-age=3600",
            "ETag": f'"{blob.sha256}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
