"""login_counter replaces login_attempt: one counter row per throttle key

Revision ID: 0009_login_counter
Revises: 0008_journal_writable
Create Date: 2026-12-07 09:00:00

The login throttle (issue 14, points 2 and 3, redesigned after review) keeps one
counter per pair, account, address or known device instead of a row per failed
attempt, claimed atomically so that refusals write nothing. Attempts are
transient (at most one window's failures), so the old table is dropped, not
converted; downgrading makes the old one anew, empty.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import api.models.base

revision: str = "0009_login_counter"
down_revision: str | None = "0008_journal_writable"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_INDEXES = {
    "ix_login_attempt_account_client_at": ["account", "client", "at"],
    "ix_login_attempt_client_at": ["client", "at"],
    "ix_login_attempt_at": ["at"],
}
NEW_INDEXES = {
    "ix_login_counter_updated_at": ["updated_at"],
    "ix_login_counter_trusted_updated_at": ["trusted", "updated_at"],
}


def upgrade() -> None:
    for name in OLD_INDEXES:
        op.drop_index(name, table_name="login_attempt")
    op.drop_table("login_attempt")
    op.create_table(
        "login_counter",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("trusted", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_allowed_at", api.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", api.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_counter")),
    )
    for name, columns in NEW_INDEXES.items():
        op.create_index(name, "login_counter", columns, unique=False)


def downgrade() -> None:
    for name in NEW_INDEXES:
        op.drop_index(name, table_name="login_counter")
    op.drop_table("login_counter")
    op.create_table(
        "login_attempt",
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", api.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempt")),
    )
    for name, columns in OLD_INDEXES.items():
        op.create_index(name, "login_attempt", columns, unique=False)
