"""Announcements of a broadcast group: uploaded audio or text for speech synthesis.

Audio is kept as sent and as its telephony master (`api.domain.audio`); the
agent is sent the master's id and checksum, so it plays exactly what was made
here. Users download either.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api import tasks
from api.db import after_commit
from api.domain import audio, validation
from api.errors import BadInput, NotFound
from api.models import (
    Announcement,
    AnnouncementKind,
    AnnouncementSource,
    AnnouncementStatus,
    AudioBlob,
    BroadcastGroup,
    Command,
    Language,
    PbxGroup,
)
from api.runtime import Runtime
from api.services import audit, commands, licensing
from api.services.actor import Actor, Scope
from api.services.directory import require_broadcast_group


async def _converted(rt: Runtime, data: bytes) -> audio.Converted:
    """The telephony master of `data`, or BadInput saying why there is none."""
    if len(data) > rt.settings.upload_max_bytes:
        raise BadInput(f"larger than {rt.settings.upload_max_bytes} bytes", field="file")
    # Seconds of CPU for long files: off the event loop.
    return await asyncio.to_thread(
        audio.telephony_master, data, rt.settings.announcement_max_seconds
    )


async def _store(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    uploaded_by: uuid.UUID | None,
    data: bytes,
    converted: audio.Converted,
) -> tuple[AudioBlob, AudioBlob]:
    """(as sent, telephony master): one row for both when the file was its own master."""
    master = AudioBlob(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        uploaded_by=uploaded_by,
        content_type=converted.master.content_type,
        size_bytes=len(converted.master_data),
        sha256=converted.master.sha256,
        duration_ms=converted.master.duration_ms,
        data=converted.master_data,
    )
    master.telephony_id = master.id
    session.add(master)
    await session.flush()
    if converted.is_master:
        return master, master
    original = AudioBlob(
        tenant_id=tenant_id,
        uploaded_by=uploaded_by,
        content_type=converted.original.content_type,
        size_bytes=len(data),
        sha256=converted.original.sha256,
        duration_ms=converted.original.duration_ms,
        data=data,
        telephony_id=master.id,
    )
    session.add(original)
    await session.flush()
    return original, master


async def store_upload(
    rt: Runtime, actor: Actor, data: bytes, declared_type: str
) -> tuple[AudioBlob, AudioBlob]:
    """Keeps an uploaded file and its telephony master; the file's id names it in GraphQL.

    Nothing is stored unless the file decodes within the size and length limits.
    """
    scope = actor.write_scope()
    assert scope.tenant_id is not None
    converted = await _converted(rt, data)
    async with rt.db.transaction() as session:
        original, master = await _store(session, scope.tenant_id, actor.user_id, data, converted)
        audit.record(
            session,
            actor,
            "audio.upload",
            tenant_id=scope.tenant_id,
            target=original.id,
            bytes=len(data),
            declared_type=declared_type[:100],
            format=converted.original.format,
            telephony=str(master.id),
        )
    return original, master


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


def _ready(rt: Runtime, ann: Announcement, original: AudioBlob, master: AudioBlob) -> None:
    ann.status, ann.error = AnnouncementStatus.READY, None
    ann.audio_id, ann.telephony_id = original.id, master.id
    ann.duration_ms, ann.sha256 = original.duration_ms, original.sha256
    ann.updated_at = rt.clock()


def _payload(group: PbxGroup, kind: AnnouncementKind, master: AudioBlob) -> dict[str, Any]:
    """The setAnnouncement command: the agent fetches and checks the master, nothing else."""
    return {
        "groupPbxId": group.pbx_id,
        "kind": kind.value,
        "audioId": str(master.id),
        "sha256": master.sha256,
        "durationMs": master.duration_ms,
    }


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
        if blob.telephony_id is None:
            raise BadInput(
                "this upload predates telephony masters; upload the file again",
                field="uploadId",
            )
        master = await scope.get(session, AudioBlob, blob.telephony_id)
        ann = await _upsert(session, scope.tenant_id, bg.id, kind)
        ann.source = AnnouncementSource.UPLOAD
        ann.tts_text = ann.tts_language = None
        _ready(rt, ann, blob, master)
        await session.flush()
        command = await commands.enqueue(
            session, rt, actor, "setAnnouncement", _payload(group, kind, master)
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
    lost when the broker is down. It hands its audio to `store_synthesised`.
    """
    scope = actor.write_scope()
    assert scope.tenant_id is not None
    text = validation.name(text, "text", max_length=rt.settings.tts_max_chars, lines=True)
    async with rt.db.transaction() as session:
        group, bg = await require_broadcast_group(session, scope, group_id)
        await licensing.valid_license(session, scope.tenant_id, rt.clock())
        ann = await _upsert(session, scope.tenant_id, bg.id, kind)
        ann.source, ann.status = AnnouncementSource.TTS, AnnouncementStatus.PENDING
        ann.tts_text, ann.tts_language, ann.error = text, language.value, None
        ann.audio_id = ann.telephony_id = ann.duration_ms = ann.sha256 = None
        ann.updated_at = rt.clock()
        await session.flush()
        ann_id = str(ann.id)
        after_commit(session, lambda: rt.tasks.wake(tasks.SYNTHESIZE_ANNOUNCEMENT, ann_id))
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


async def _pending(
    session: AsyncSession, announcement_id: uuid.UUID, text: str, language: Language
) -> Announcement | None:
    """The announcement, locked, if it still waits for exactly this text."""
    ann = await session.scalar(
        select(Announcement).where(Announcement.id == announcement_id).with_for_update()
    )
    if (
        ann is None
        or ann.source is not AnnouncementSource.TTS
        or ann.status is not AnnouncementStatus.PENDING
        or (ann.tts_text, ann.tts_language) != (text, language.value)
    ):
        return None
    return ann


async def store_synthesised(
    rt: Runtime, announcement_id: uuid.UUID, text: str, language: Language, data: bytes
) -> Announcement | None:
    """What the TTS worker calls with the WAV it made of `text`: stored like an upload.

    The announcement becomes READY and the agent is sent the master, or FAILED
    with the reason when the audio cannot be decoded or breaks a limit. Returns
    None, storing nothing, when the announcement no longer waits for this text
    (changed or removed meanwhile), so a late or repeated call does no harm.
    Raises Conflict, storing nothing, when the tenant's license has lapsed.
    """
    try:
        converted: audio.Converted | None = await _converted(rt, data)
        reason = None
    except BadInput as err:
        converted, reason = None, f"the synthesised audio is unusable: {err.message}"
    async with rt.db.transaction() as session:
        ann = await _pending(session, announcement_id, text, language)
        if ann is None:
            return None
        if converted is None:
            ann.status, ann.error, ann.updated_at = AnnouncementStatus.FAILED, reason, rt.clock()
            return ann
        bg = await session.get_one(BroadcastGroup, ann.broadcast_group_id)
        group = await session.get_one(PbxGroup, bg.group_id)
        original, master = await _store(session, ann.tenant_id, None, data, converted)
        _ready(rt, ann, original, master)
        await session.flush()
        await commands.enqueue_for(
            session, rt, ann.tenant_id, None, "setAnnouncement", _payload(group, ann.kind, master)
        )
        audit.record(
            session,
            None,
            "announcement.synthesized",
            tenant_id=ann.tenant_id,
            target=group.id,
            kind=ann.kind.value,
        )
    return ann


async def synthesis_job(rt: Runtime, announcement_id: uuid.UUID) -> tuple[str, Language] | None:
    """(text, language) the announcement waits to be spoken in, or None when it waits no more."""
    async with rt.db.reading() as session:
        ann = await session.get(Announcement, announcement_id)
        if (
            ann is None
            or ann.source is not AnnouncementSource.TTS
            or ann.status is not AnnouncementStatus.PENDING
            or ann.tts_text is None
        ):
            return None
        return ann.tts_text, Language(ann.tts_language or Language.DE.value)


async def fail_synthesis(
    rt: Runtime, announcement_id: uuid.UUID, text: str, language: Language, reason: str
) -> Announcement | None:
    """Marks the announcement FAILED with `reason` (what its users read in `error`).

    Like `store_synthesised`, changes nothing and returns None when the
    announcement no longer waits for this text.
    """
    async with rt.db.transaction() as session:
        ann = await _pending(session, announcement_id, text, language)
        if ann is None:
            return None
        ann.status, ann.error, ann.updated_at = AnnouncementStatus.FAILED, reason, rt.clock()
        bg = await session.get_one(BroadcastGroup, ann.broadcast_group_id)
        audit.record(
            session,
            None,
            "announcement.synthesis_failed",
            tenant_id=ann.tenant_id,
            target=bg.group_id,
            kind=ann.kind.value,
            reason=reason[:200],
        )
    return ann


async def pending_syntheses(rt: Runtime, unchanged_since: datetime) -> list[uuid.UUID]:
    """Announcements waiting for speech, unchanged since the given time, oldest first."""
    async with rt.db.reading() as session:
        rows = await session.scalars(
            select(Announcement.id)
            .where(
                Announcement.source == AnnouncementSource.TTS,
                Announcement.status == AnnouncementStatus.PENDING,
                Announcement.updated_at <= unchanged_since,
            )
            .order_by(Announcement.updated_at)
        )
        return list(rows)


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
