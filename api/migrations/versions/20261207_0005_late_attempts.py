"""call_attempt: late attempts and members not called, with the reason

Revision ID: 0005_late_attempts
Revises: 0004_installation_sip
Create Date: 2026-12-07 10:00:00

An alarm calls every member at least once, also after the broadcast timeout when the
agent was down; such attempts say why they were late (issue 14, point 11). A test
broadcast's member the timeout left uncalled gets the outcome not_called instead of
no row. Existing rows get nulls: they were on time.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import api.models.base

revision: str = "0005_late_attempts"
down_revision: str | None = "0004_installation_sip"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_OUTCOMES = (
    "confirmed",
    "answered",
    "busy",
    "no_answer",
    "rejected",
    "failed",
    "skipped_busy",
)
NEW_OUTCOMES = (*OLD_OUTCOMES, "not_called")
LATE_REASONS = ("agent_down", "command_late", "deadline_passed")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    utc = api.models.base.UTCDateTime(timezone=True)
    with op.batch_alter_table("call_attempt") as batch:
        batch.add_column(sa.Column("late_reason", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("late_from", utc, nullable=True))
        batch.add_column(sa.Column("late_until", utc, nullable=True))
        batch.create_check_constraint(
            op.f("ck_call_attempt_late_reason"), _in("late_reason", LATE_REASONS)
        )
        batch.drop_constraint(op.f("ck_call_attempt_call_outcome"), type_="check")
        batch.create_check_constraint(
            op.f("ck_call_attempt_call_outcome"), _in("outcome", NEW_OUTCOMES)
        )


def downgrade() -> None:
    # A member not called has no attempt in the old schema: the row goes.
    op.execute("DELETE FROM call_attempt WHERE outcome = 'not_called'")
    with op.batch_alter_table("call_attempt") as batch:
        batch.drop_constraint(op.f("ck_call_attempt_call_outcome"), type_="check")
        batch.create_check_constraint(
            op.f("ck_call_attempt_call_outcome"), _in("outcome", OLD_OUTCOMES)
        )
        batch.drop_constraint(op.f("ck_call_attempt_late_reason"), type_="check")
        for column in ("late_until", "late_from", "late_reason"):
            batch.drop_column(column)
