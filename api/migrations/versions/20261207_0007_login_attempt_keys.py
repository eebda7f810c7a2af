"""login_attempt: a keyed hash of the account instead of the e-mail; an index on the time

Revision ID: 0007_login_attempt_keys
Revises: 0006_broadcast_failure_code
Create Date: 2026-12-07 07:00:00

The throttle (issue 14, points 2 and 3) counts failures per account and client
address and keeps them only for its window; the e-mail typed is no longer stored,
only a 64-character keyed hash of it. The rows are transient (at most 15 minutes'
failures), so the table is made anew: existing attempts are dropped, not converted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import api.models.base

revision: str = "0007_login_attempt_keys"
down_revision: str | None = "0006_broadcast_failure_code"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create(account: sa.Column[str], indexes: dict[str, list[str]]) -> None:
    op.create_table(
        "login_attempt",
        account,
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", api.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempt")),
    )
    for name, columns in indexes.items():
        op.create_index(name, "login_attempt", columns, unique=False)


def _drop(indexes: list[str]) -> None:
    for name in indexes:
        op.drop_index(name, table_name="login_attempt")
    op.drop_table("login_attempt")


NEW = {
    "ix_login_attempt_account_client_at": ["account", "client", "at"],
    "ix_login_attempt_client_at": ["client", "at"],
    "ix_login_attempt_at": ["at"],
}
OLD = {
    "ix_login_attempt_client_at": ["client", "at"],
    "ix_login_attempt_email_at": ["email", "at"],
}


def upgrade() -> None:
    _drop(list(OLD))
    _create(sa.Column("account", sa.String(length=64), nullable=False), NEW)


def downgrade() -> None:
    _drop(list(NEW))
    _create(sa.Column("email", sa.String(length=320), nullable=False), OLD)
