from __future__ import annotations

import strawberry

from api.services import auth
from schema.auth.types import User
from schema.info import Info


@strawberry.type
class AuthQuery:
    @strawberry.field(description="The signed-in user.")
    async def me(self, info: Info) -> User:
        actor = await info.context.actor()
        return User.of(await auth.me(info.context.rt, actor))
