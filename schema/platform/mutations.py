from __future__ import annotations

from datetime import datetime

import strawberry

from api import models
from api.services import platform
from schema.auth.types import User
from schema.context import parse_id
from schema.info import Info
from schema.platform.types import (
    Installation,
    IssuedLicense,
    License,
    Tenant,
    TenantInput,
    TenantUpdateInput,
    UserInput,
    UserUpdateInput,
)


@strawberry.type
class PlatformMutation:
    @strawberry.mutation
    async def create_tenant(self, info: Info, input: TenantInput) -> Tenant:
        actor = await info.context.actor()
        tenant = await platform.create_tenant(
            info.context.rt, actor, input.name, models.Language(input.language), input.contact_email
        )
        return Tenant.of(tenant)

    @strawberry.mutation
    async def update_tenant(
        self, info: Info, id: strawberry.ID, input: TenantUpdateInput
    ) -> Tenant:
        actor = await info.context.actor()
        changes = platform.TenantChanges(
            name=input.name,
            language=models.Language(input.language) if input.language else None,
            contact_email=input.contact_email,
            active=input.active,
        )
        tenant = await platform.update_tenant(
            info.context.rt, actor, parse_id(id, "tenant"), changes
        )
        return Tenant.of(tenant)

    @strawberry.mutation(description="Deactivates a tenant: its users can no longer sign in.")
    async def deactivate_tenant(self, info: Info, id: strawberry.ID) -> Tenant:
        actor = await info.context.actor()
        tenant = await platform.update_tenant(
            info.context.rt, actor, parse_id(id, "tenant"), platform.TenantChanges(active=False)
        )
        return Tenant.of(tenant)

    @strawberry.mutation(description="Issues a license; its key is returned once.")
    async def issue_license(
        self, info: Info, tenant_id: strawberry.ID, seats: int, valid_until: datetime
    ) -> IssuedLicense:
        actor = await info.context.actor()
        lic, key = await platform.issue_license(
            info.context.rt, actor, parse_id(tenant_id, "tenant"), seats, valid_until
        )
        return IssuedLicense(license=License.of(lic), key=key)

    @strawberry.mutation
    async def revoke_license(self, info: Info, id: strawberry.ID) -> License:
        actor = await info.context.actor()
        return License.of(
            await platform.revoke_license(info.context.rt, actor, parse_id(id, "license"))
        )

    @strawberry.mutation
    async def create_user(self, info: Info, input: UserInput) -> User:
        actor = await info.context.actor()
        user = await platform.create_user(
            info.context.rt,
            actor,
            email=input.email,
            name=input.name,
            role=models.Role(input.role),
            password=input.password,
            tenant_id=parse_id(input.tenant_id, "tenant") if input.tenant_id else None,
            language=models.Language(input.language),
        )
        return User.of(user)

    @strawberry.mutation
    async def update_user(self, info: Info, id: strawberry.ID, input: UserUpdateInput) -> User:
        actor = await info.context.actor()
        changes = platform.UserChanges(
            name=input.name,
            role=models.Role(input.role) if input.role else None,
            language=models.Language(input.language) if input.language else None,
            active=input.active,
            password=input.password,
        )
        user = await platform.update_user(info.context.rt, actor, parse_id(id, "user"), changes)
        return User.of(user)

    @strawberry.mutation(description="Deactivates a user and ends their sessions.")
    async def deactivate_user(self, info: Info, id: strawberry.ID) -> User:
        actor = await info.context.actor()
        user = await platform.update_user(
            info.context.rt, actor, parse_id(id, "user"), platform.UserChanges(active=False)
        )
        return User.of(user)

    @strawberry.mutation(description="Revokes an installation's agent token.")
    async def revoke_installation(self, info: Info, id: strawberry.ID) -> Installation:
        actor = await info.context.actor()
        inst = await platform.revoke_installation(
            info.context.rt, actor, parse_id(id, "installation")
        )
        return Installation.of(inst)
