"""Who is calling, and the one place where tenant scoping is decided."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, true
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Forbidden, NotFound
from api.models import Role

T = TypeVar("T")


@dataclass(frozen=True)
class Scope:
    """Rows a caller may touch: one tenant's, or every tenant's (platform admin reads)."""

    tenant_id: uuid.UUID | None

    def where(self, model: Any) -> ColumnElement[bool]:
        if self.tenant_id is None:
            return true()
        clause: ColumnElement[bool] = model.tenant_id == self.tenant_id
        return clause

    async def get(self, session: AsyncSession, model: type[T], object_id: uuid.UUID) -> T:
        """The object if it is in scope; NOT_FOUND alike for missing and foreign rows."""
        obj = await session.get(model, object_id)
        if obj is None or (
            self.tenant_id is not None and obj.tenant_id != self.tenant_id  # type: ignore[attr-defined]
        ):
            raise NotFound(f"{_label(model)} not found")
        return obj


def _label(model: type[Any]) -> str:
    return str(getattr(model, "__label__", model.__name__))


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    role: Role
    session_id: uuid.UUID

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    def require_platform_admin(self) -> None:
        if not self.is_platform_admin:
            raise Forbidden("only platform administrators may do this")

    def read_scope(self, tenant_id: uuid.UUID | None = None) -> Scope:
        """Scope for reading tenant data; platform admins may name a tenant or see all."""
        if self.is_platform_admin:
            return Scope(tenant_id)
        if tenant_id is not None and tenant_id != self.tenant_id:
            raise NotFound("tenant not found")
        return Scope(self.tenant_id)

    def write_scope(self) -> Scope:
        """Scope for changing tenant data: tenant admins, in their own tenant only."""
        if self.role is not Role.TENANT_ADMIN or self.tenant_id is None:
            if self.role is Role.TENANT_VIEWER:
                raise Forbidden("viewers cannot change anything")
            raise Forbidden("only the tenant's administrators may change its configuration")
        return Scope(self.tenant_id)

    @property
    def own_tenant_id(self) -> uuid.UUID:
        """The caller's tenant, for writes already checked by ``write_scope``."""
        assert self.tenant_id is not None
        return self.tenant_id
