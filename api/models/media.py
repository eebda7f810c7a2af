"""Audio: uploaded files and the announcements made from them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column

from api.models.base import Base, CreatedMixin, IdMixin, str_enum
from api.models.enums import AnnouncementKind, AnnouncementSource, AnnouncementStatus


class AudioBlob(IdMixin, CreatedMixin, Base):
    """Audio bytes, stored in the database so every API process can serve them.

    An upload is kept as sent and as its telephony master (WAV, PCM 16-bit,
    mono, 8 kHz), which is what the agent plays; `telephony_id` leads from
    either to the master (a master, or an upload that already was one, names
    itself). Null only for audio stored before masters existed.
    """

    __tablename__ = "audio_blob"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    duration_ms: Mapped[int]
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    telephony_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("audio_blob.id"))


class Announcement(IdMixin, CreatedMixin, Base):
    __tablename__ = "announcement"
    __table_args__ = (UniqueConstraint("broadcast_group_id", "kind"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    broadcast_group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("broadcast_group.id", ondelete="CASCADE")
    )
    kind: Mapped[AnnouncementKind] = mapped_column(str_enum(AnnouncementKind, "announcement_kind"))
    source: Mapped[AnnouncementSource] = mapped_column(
        str_enum(AnnouncementSource, "announcement_source")
    )
    status: Mapped[AnnouncementStatus] = mapped_column(
        str_enum(AnnouncementStatus, "announcement_status")
    )
    # The audio as uploaded or synthesised, and the telephony master the agent got.
    audio_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("audio_blob.id"))
    telephony_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("audio_blob.id"))
    # Copied from the audio (as uploaded), so that listing announcements needs no blob reads.
    duration_ms: Mapped[int | None]
    sha256: Mapped[str | None] = mapped_column(String(64))
    tts_text: Mapped[str | None] = mapped_column(Text)
    tts_language: Mapped[str | None] = mapped_column(String(8))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]
