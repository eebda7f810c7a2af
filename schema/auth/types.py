from __future__ import annotations

from datetime import datetime

import strawberry

from api import models
from schema.enums import Language, Role


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    name: str
    role: Role
    language: Language
    active: bool
    tenant_id: strawberry.ID | None
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, u: models.User) -> User:
        return cls(
            id=strawberry.ID(str(u.id)),
            email=u.email,
            name=u.name,
            role=u.role,
            language=u.language,
            active=u.active,
            tenant_id=strawberry.ID(str(u.tenant_id)) if u.tenant_id else None,
            created_at=u.created_at,
            last_login_at=u.last_login_at,
        )


@strawberry.type
class LoginResult:
    token: str = strawberry.field(
        description="Bearer token for non-browser clients; browsers use the cookie set alongside."
    )
    expires_at: datetime
    user: User
