"""watchdog keys: one open incident per installation and kind, one notice per license stage

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00

The watchdog opens incidents with INSERT … ON CONFLICT DO NOTHING against these
keys, so two sweeps at once (or one repeated after a crash) cannot mail twice.
Rows written before this revision are all closed or unique already (nothing
wrote incidents before the watchdog existed).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_watchdog_incident_open", table_name="watchdog_incident")
    with op.batch_alter_table("watchdog_incident") as batch:
        batch.add_column(sa.Column("stage_days", sa.Integer(), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_watchdog_incident_license_id_kind_stage_days"),
            ["license_id", "kind", "stage_days"],
        )
    op.create_index(
        "uq_watchdog_incident_open",
        "watchdog_incident",
        ["installation_id", "kind"],
        unique=True,
        postgresql_where=sa.text("closed_at IS NULL"),
        sqlite_where=sa.text("closed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_watchdog_incident_open", table_name="watchdog_incident")
    with op.batch_alter_table("watchdog_incident") as batch:
        batch.drop_constraint(
            op.f("uq_watchdog_incident_license_id_kind_stage_days"), type_="unique"
        )
        batch.drop_column("stage_days")
    op.create_index(
        "ix_watchdog_incident_open",
        "watchdog_incident",
        ["installation_id", "kind", "closed_at"],
        unique=False,
    )
