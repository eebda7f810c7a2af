"""broadcast: how the alarm was raised (phone, the agent's own SIP line, the website)

Revision ID: 0011_trigger_source
Revises: 0010_attempt_hold
Create Date: 2026-12-08 12:00:00

The agent's report says how the alarm was raised (issue 16, point 3): by a trigger
call through the PBX's call routing and the job service ("phone"), by a call the agent
answered itself over SIP ("sip") or from the website ("website"). Existing rows get
what can be known: a trigger from the website has a user who asked for it (a failed
one), a row keyed by its command, or a triggerBroadcast command whose result names
the broadcast; every other broadcast came from a trigger call through the job
service, the only other way there was.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_trigger_source"
down_revision: str | None = "0010_attempt_hold"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = ("phone", "sip", "website")


def upgrade() -> None:
    with op.batch_alter_table("broadcast") as batch:
        batch.add_column(sa.Column("trigger_source", sa.String(length=32), nullable=True))
    broadcast = sa.table(
        "broadcast",
        sa.column("tenant_id", sa.Uuid()),
        sa.column("agent_broadcast_id", sa.String()),
        sa.column("triggered_by_user_id", sa.Uuid()),
        sa.column("trigger_source", sa.String()),
    )
    command = sa.table(
        "command",
        sa.column("tenant_id", sa.Uuid()),
        sa.column("type", sa.String()),
        sa.column("result", sa.JSON()),
    )
    ran_a_command = (
        sa.exists()
        .where(
            command.c.tenant_id == broadcast.c.tenant_id,
            command.c.type == "triggerBroadcast",
            command.c.result["broadcastId"].as_string() == broadcast.c.agent_broadcast_id,
        )
        .correlate(broadcast)
    )
    website = sa.or_(
        broadcast.c.triggered_by_user_id.is_not(None),
        broadcast.c.agent_broadcast_id.like("command:%"),  # a lost trigger's row
        ran_a_command,
    )
    op.execute(
        sa.update(broadcast).values(trigger_source=sa.case((website, "website"), else_="phone"))
    )
    with op.batch_alter_table("broadcast") as batch:
        batch.alter_column("trigger_source", existing_type=sa.String(length=32), nullable=False)
        batch.create_check_constraint(
            op.f("ck_broadcast_trigger_source"),
            f"trigger_source IN ({', '.join(repr(s) for s in SOURCES)})",
        )


def downgrade() -> None:
    with op.batch_alter_table("broadcast") as batch:
        batch.drop_constraint(op.f("ck_broadcast_trigger_source"), type_="check")
        batch.drop_column("trigger_source")
