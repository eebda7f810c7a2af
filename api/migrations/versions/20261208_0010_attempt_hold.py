"""call_attempt: when the member put the call on hold and took it back

Revision ID: 0010_attempt_hold
Revises: 0009_login_counter
Create Date: 2026-12-08 09:00:00

A member may put an alarm call on hold; the agent stops the message meanwhile and
plays it again from the start on the member's return, and reports both as steps of
the attempt, "held" and "resumed" (issue 15, point 7). The latest of each is kept.
Existing rows get nulls: nobody was on hold, or the agent did not say.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import api.models.base

revision: str = "0010_attempt_hold"
down_revision: str | None = "0009_login_counter"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = api.models.base.UTCDateTime(timezone=True)
    with op.batch_alter_table("call_attempt") as batch:
        batch.add_column(sa.Column("held_at", utc, nullable=True))
        batch.add_column(sa.Column("resumed_at", utc, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_attempt") as batch:
        batch.drop_column("resumed_at")
        batch.drop_column("held_at")
