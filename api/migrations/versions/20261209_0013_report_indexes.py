"""Indexes for the Verlauf's result and the audit log's page (issue 17, points 4, 7)

Revision ID: 0013_report_indexes
Revises: 0012_broadcast_stop
Create Date: 2026-12-09 12:00:00

call_attempt: a partial index of the confirmed attempts by broadcast and member, so
each broadcast's confirmedCount (and the list's outcome filter) reads the index only.
audit_log: by time alone (the platform admin's log of every tenant) and by user and
time (the filter by user). Figures: bench/report_queries.py.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_report_indexes"
down_revision: str | None = "0012_broadcast_stop"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONFIRMED = sa.text("outcome = 'confirmed'")


def upgrade() -> None:
    op.create_index(
        "ix_call_attempt_confirmed",
        "call_attempt",
        ["broadcast_id", "member_pbx_id"],
        postgresql_where=CONFIRMED,
        sqlite_where=CONFIRMED,
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor_at", "audit_log", ["actor_user_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_actor_at", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_index("ix_call_attempt_confirmed", table_name="call_attempt")
