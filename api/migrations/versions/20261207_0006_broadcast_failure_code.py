"""broadcast: a failure code for a trigger that never became a broadcast

Revision ID: 0006_broadcast_failure_code
Revises: 0005_late_attempts
Create Date: 2026-12-07 06:00:00

A job file the job service found damaged (issue 14, point 8) is shown in the history
as a failed trigger; the website words it from this code (JOB_FILE_DAMAGED).
Existing rows get null: they were broadcasts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_broadcast_failure_code"
down_revision: str | None = "0005_late_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("broadcast") as batch:
        batch.add_column(sa.Column("failure_code", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("broadcast") as batch:
        batch.drop_column("failure_code")
