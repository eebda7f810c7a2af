"""installation: whether the agent can write its broadcast journal; its incident kind

Revision ID: 0008_journal_writable
Revises: 0007_login_attempt_keys
Create Date: 2026-12-07 08:00:00

A full or read-only disk on the agent no longer stops calls; broadcasts run from
memory and the health report says `journalWritable: false` (issue 14, point 10),
a watchdog incident of its own kind. Existing rows get null: unknown until their
agent reports again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_journal_writable"
down_revision: str | None = "0007_login_attempt_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = (
    "heartbeat_missed",
    "pbx_unreachable",
    "jobservice_unreachable",
    "alarm_service_failed",
    "sip_registration_failed",
    "license_expiring",
    "license_expired",
)
NEW_KINDS = (*OLD_KINDS[:5], "journal_not_writable", *OLD_KINDS[5:])


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("installation") as batch:
        batch.add_column(sa.Column("journal_writable", sa.Boolean(), nullable=True))
    _incident_kinds(NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM watchdog_incident WHERE kind = 'journal_not_writable'")
    _incident_kinds(OLD_KINDS)
    with op.batch_alter_table("installation") as batch:
        batch.drop_column("journal_writable")


def _incident_kinds(kinds: Sequence[str]) -> None:
    with op.batch_alter_table("watchdog_incident") as batch:
        batch.drop_constraint(op.f("ck_watchdog_incident_incident_kind"), type_="check")
        batch.create_check_constraint(
            op.f("ck_watchdog_incident_incident_kind"), _in("kind", kinds)
        )
