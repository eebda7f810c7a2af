"""broadcast: who stopped a running broadcast, how and when

Revision ID: 0012_broadcast_stop
Revises: 0011_trigger_source
Create Date: 2026-12-09 09:00:00

A running broadcast can be stopped (issue 17, point 2): from the website
(cancelBroadcast) or by phone (the PIN, then 0 in the menu, through the call routing
or the agent's own SIP line). The agent reports who stopped it (a user's name and
mail, or the caller's number), how (the TriggerSource names) and when, with the
reason the website gave. Existing rows get nulls: none was stopped.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import api.models.base

revision: str = "0012_broadcast_stop"
down_revision: str | None = "0011_trigger_source"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIAS = ("phone", "sip", "website")


def upgrade() -> None:
    utc = api.models.base.UTCDateTime(timezone=True)
    with op.batch_alter_table("broadcast") as batch:
        batch.add_column(sa.Column("stopped_at", utc, nullable=True))
        batch.add_column(sa.Column("stopped_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("stopped_via", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("stop_reason", sa.String(length=500), nullable=True))
        batch.create_check_constraint(
            op.f("ck_broadcast_stopped_via"),
            f"stopped_via IN ({', '.join(repr(s) for s in VIAS)})",
        )


def downgrade() -> None:
    with op.batch_alter_table("broadcast") as batch:
        batch.drop_constraint(op.f("ck_broadcast_stopped_via"), type_="check")
        batch.drop_column("stop_reason")
        batch.drop_column("stopped_via")
        batch.drop_column("stopped_by")
        batch.drop_column("stopped_at")
