from __future__ import annotations

from datetime import datetime

import strawberry

from api import models
from schema.enums import IncidentKind


def _gid(value: object) -> strawberry.ID | None:
    return strawberry.ID(str(value)) if value is not None else None


@strawberry.type(
    description="Something the watchdog saw: a failing installation or a license notice."
)
class Incident:
    id: strawberry.ID
    tenant_id: strawberry.ID
    installation_id: strawberry.ID | None
    hostname: str | None = strawberry.field(description="The installation's, if any.")
    license_id: strawberry.ID | None
    kind: IncidentKind
    stage_days: int | None = strawberry.field(
        description="License notices: days before the end (0: expired)."
    )
    opened_at: datetime
    notified_at: datetime | None = strawberry.field(description="When its mails were queued.")
    closed_at: datetime | None
    close_notified_at: datetime | None = strawberry.field(
        description="When the resolved mails were queued (none for a revoked installation)."
    )

    @classmethod
    def of(cls, i: models.WatchdogIncident, hostname: str | None = None) -> Incident:
        return cls(
            id=strawberry.ID(str(i.id)),
            tenant_id=strawberry.ID(str(i.tenant_id)),
            installation_id=_gid(i.installation_id),
            hostname=hostname,
            license_id=_gid(i.license_id),
            kind=i.kind,
            stage_days=i.stage_days,
            opened_at=i.opened_at,
            notified_at=i.notified_at,
            closed_at=i.closed_at,
            close_notified_at=i.close_notified_at,
        )
