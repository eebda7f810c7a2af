"""telephony master: audio_blob.telephony_id and announcement.telephony_id

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00

Audio stored before this revision has no master (the columns stay null); such
an upload must be sent again before it can become an announcement.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audio_blob") as batch:
        batch.add_column(sa.Column("telephony_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_audio_blob_telephony_id_audio_blob"), "audio_blob", ["telephony_id"], ["id"]
        )
    with op.batch_alter_table("announcement") as batch:
        batch.add_column(sa.Column("telephony_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_announcement_telephony_id_audio_blob"), "audio_blob", ["telephony_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("announcement") as batch:
        batch.drop_constraint(op.f("fk_announcement_telephony_id_audio_blob"), type_="foreignkey")
        batch.drop_column("telephony_id")
    with op.batch_alter_table("audio_blob") as batch:
        batch.drop_constraint(op.f("fk_audio_blob_telephony_id_audio_blob"), type_="foreignkey")
        batch.drop_column("telephony_id")
