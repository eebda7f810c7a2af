"""Announcements of a broadcast group: uploaded audio or text for speech synthesis."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import audio, validation
from api.errors import BadInput, NotFound
from api.models import (
    Announcement,
    AnnouncementKind,
    AnnouncementSource,
    AnnouncementStatus,
    AudioBlob,
    Command,
    Language,
)
from api.runtime import Runtime
from api.services import audit, commands, licensing
from api.services.actor import Actor, Scope
from api.services.directory import require_broadcast_group


async def store_upload(rt: Runtime, actor: Actor, data: bytes, declared_type: str) -> AudioBlob:
    """Keeps an uploaded file after checking it decodes; the id then names it in GraphQL."""
    scope = actor.write_scope()
    if len(data) > rt.settings.upload_max_bytes:
        raise BadInput(f"larger than {rt.settings.upload_max_bytes} bytes", field="file")
    info = audio.probe(data, rt.settings.announcement_max_seconds)
    blob = AudioBlob(
        tenant_id=scope.tenant_id,
        uploaded_by=actor.user_id,
        content_type=info.content_type,
        size_bytes=len(data),
        sha256=info.sha256,
        duration_ms=info.duration_ms,
        data=data,
    )
    async with rt.db.transaction() as session:
        session.add(blob)
        await session.flush()
        audit.record(
            session,
            actor,
            "audio.upload",
            tenant_id=scope.tenant_id,
            target=blob.id,
            bytes=len(data),
            declared_type=declared_type[:100],
        )
    return blob


async def audio_bytes(rt: Runtime, scope: Scope, blob_id: uuid.UUID) -> AudioBlob:
    """The audio with its bytes, if in scope (a user's, or an agent's own tenant)."""
    async with rt.db.reading() as session:
        blob = await scope.get(session, AudioBlob, blob_id)
        await session.refresh(blob, ["data"])
    return blob


async def _upsert(
    session: AsyncSession, tenant_id: uuid.UUID, bg_id: uuid.UUID, kind: AnnouncementKind
) -> Announcement:
    ann = await session.scalar(
        select(Announcement)
        .where(Announcement.broadcast_group_id == bg_id, Announcement.kind == kind)
        .with_for_update()
    )
    if ann is None:
        ann = Announcement(tenant_id=tenant_id, broadcast_group_id=bg_id, kind=kind)
        session.add(ann)
    return ann


async def set_from_upload(
    rt: Runtime, actor: Actor, group_id: uuid.UUID, kind: AnnouncementKind, upload_id: uuid.UUID
) -> tuple[Announcement, Command]:
    scope = actor.write_scope()
    assert scope.tenant_id is not None
    async with rt.db.transaction() as session:
        group, bg = await require_broadcast_group(session, scope, group_id)
        try:
            blob = await scope.get(session, AudioBlob, upload_id)
        except NotFound:
            raise NotFound("upload not found", field="uploadId") from None
        ann = await _upsert(session, scope.tenant_id, bg.id, kind)
        ann.source, ann.status, ann.audio_id = (
            AnnouncementSource.UPLOAD,
            AnnouncementStatus.READY,
            blob.id,
        )
        ann.duration_ms, ann.sha256 = blob.duration_ms, blob.sha256
        ann.tts_text = ann.tts_language = ann.error = None
        ann.updated_at = rt.clock()
        await session.flush()
        command = await commands.enqueue(
            session,
            rt,
            actor,
            "setAnnouncement",
            {
                "groupPbxId": group.pbx_id,
                "kind": kind.value,
                "audioId": str(blob.id),
                "sha256": blob.sha256,
                "durationMs": blob.duration_ms,
            },
        )
        audit.record(
            session,
            actor,
            "announcement.upload",
            tenant_id=scope.tenant_id,
            target=group.id,
            kind=kind.value,
        )
    return ann, command


async def request_synthesis(
    rt: Runtime,
    actor: Actor,
    group_id: uuid.UUID,
    kind: AnnouncementKind,
    text: str,
    language: Language,
) -> Announcement:
    """Stores the text as a pending announcement; the TTS worker turns it into audio.

    The pending row is the queue: the worker claims pending rows, so nothing is
    lost when the broker is down.
    """
    scope = actor.write_scope()
    assert scope.tenant_id is not None
    text = validation.name(text, "text", max_length=rt.settings.tts_max_chars)
    async with rt.db.transaction() as session:
        group, bg = await require_broadcast_group(session, scope, group_id)
        await licensing.valid_license(session, scope.tenant_id, rt.clock())
        ann = await _upsert(session, scope.tenant_id, bg.id, kind)
        ann.source, ann.status = AnnouncementSource.TTS, AnnouncementStatus.PENDING
        ann.tts_text, ann.tts_language, ann.error = text, language.value, None
        ann.audio_id = ann.duration_ms = ann.sha256 = None
        ann.updated_at = rt.clock()
        await session.flush()
        audit.record(
            session,
            actor,
            "announcement.synthesize",
            tenant_id=scope.tenant_id,
            target=group.id,
            kind=kind.value,
            chars=len(text),
        )
    return ann


async def of_broadcast_groups(rt: Runtime, bg_ids: Sequence[uuid.UUID]) -> list[list[Announcement]]:
    async with rt.db.reading() as session:
        rows = await session.scalars(
            select(Announcement)
            .where(Announcement.broadcast_group_id.in_(bg_ids))
            .order_by(Announcement.kind)
        )
        by_bg: dict[uuid.UUID, list[Announcement]] = {i: [] for i in bg_ids}
        for ann in rows:
            by_bg[ann.broadcast_group_id].append(ann)
    return [by_bg[i] for i in bg_ids]
