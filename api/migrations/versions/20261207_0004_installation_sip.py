"""installation: what the agent runs on and its SIP registration; the incident kind for it

Revision ID: 0004_installation_sip
Revises: 0003
Create Date: 2026-12-07 09:00:00

The agent reports its PBX adapter, its dialer and the SIP registration with its last
error (issue 13); a failed registration is a watchdog incident of its own kind.
Existing rows get nulls: unknown until their agent reports again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import api.models.base

revision: str = "0004_installation_sip"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = (
    "heartbeat_missed",
    "pbx_unreachable",
    "jobservice_unreachable",
    "alarm_service_failed",
    "license_expiring",
    "license_expired",
)
NEW_KINDS = (*OLD_KINDS[:4], "sip_registration_failed", *OLD_KINDS[4:])
ENUMS = {
    "pbx_adapter": ("pbx_adapter", ("sim", "swyx")),
    "dialer": ("dialer_kind", ("sim", "sip")),
    "sip_registration": (
        "sip_registration_state",
        ("registering", "registered", "failed", "disabled"),
    ),
}


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    utc = api.models.base.UTCDateTime(timezone=True)
    with op.batch_alter_table("installation") as batch:
        for column in ENUMS:
            batch.add_column(sa.Column(column, sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("sip_registration_since", utc, nullable=True))
        batch.add_column(sa.Column("sip_error_code", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("sip_error_params", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("sip_error_detail", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("sip_error_at", utc, nullable=True))
        for column, (name, values) in ENUMS.items():
            batch.create_check_constraint(op.f(f"ck_installation_{name}"), _in(column, values))
    _incident_kinds(NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM watchdog_incident WHERE kind = 'sip_registration_failed'")
    _incident_kinds(OLD_KINDS)
    with op.batch_alter_table("installation") as batch:
        for _column, (name, _values) in ENUMS.items():
            batch.drop_constraint(op.f(f"ck_installation_{name}"), type_="check")
        for column in (
            "sip_error_at",
            "sip_error_detail",
            "sip_error_params",
            "sip_error_code",
            "sip_registration_since",
            *ENUMS,
        ):
            batch.drop_column(column)


def _incident_kinds(kinds: Sequence[str]) -> None:
    with op.batch_alter_table("watchdog_incident") as batch:
        batch.drop_constraint(op.f("ck_watchdog_incident_incident_kind"), type_="check")
        batch.create_check_constraint(
            op.f("ck_watchdog_incident_incident_kind"), _in("kind", kinds)
        )
