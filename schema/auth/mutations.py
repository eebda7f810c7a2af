from __future__ import annotations

import strawberry

from api.services import auth
from schema.auth.types import LoginResult, User
from schema.info import Info


@strawberry.type
class AuthMutation:
    @strawberry.mutation(
        description="Signs in; sets an HttpOnly session cookie and returns a token."
    )
    async def login(self, info: Info, email: str, password: str) -> LoginResult:
        ctx = info.context
        settings = ctx.rt.settings
        device = ctx.request.cookies.get(settings.device_cookie_name)
        signed = await auth.login(ctx.rt, email, password, ctx.client, device)
        if ctx.response is not None:
            ctx.response.set_cookie(
                settings.session_cookie_name,
                signed.token,
                max_age=settings.session_ttl_seconds,
                httponly=True,
                secure=settings.cookie_secure,
                samesite="strict",
                path="/",
            )
            # Marks this browser as known to the account: the throttle lets it
            # through whatever others try (docs/decisions/login-throttle.md).
            ctx.response.set_cookie(
                settings.device_cookie_name,
                signed.device_cookie,
                max_age=settings.device_cookie_days * 24 * 3600,
                httponly=True,
                secure=settings.cookie_secure,
                samesite="strict",
                path="/",
            )
        ctx.forget_actor()
        return LoginResult(
            token=signed.token, expires_at=signed.expires_at, user=User.of(signed.user)
        )

    @strawberry.mutation(description="Ends this session (cookie or token).")
    async def logout(self, info: Info) -> bool:
        ctx = info.context
        await auth.logout(ctx.rt, await ctx.actor())
        if ctx.response is not None:
            ctx.response.delete_cookie(ctx.rt.settings.session_cookie_name, path="/")
        ctx.forget_actor()
        return True

    @strawberry.mutation(description="Changes the own password; other sessions are signed out.")
    async def change_password(self, info: Info, current_password: str, new_password: str) -> bool:
        await auth.change_password(
            info.context.rt, await info.context.actor(), current_password, new_password
        )
        return True
