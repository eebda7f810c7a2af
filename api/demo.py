"""``rundruf demo``: the embedded default on one machine (SQLite, no Redis).

It seeds a platform admin, a tenant with an admin and a viewer and a license,
serves the API and prints how to sign in. Passwords are new on every run.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import select

from api.migrate import upgrade
from api.models import Language, License, Role, Tenant, User
from api.runtime import Runtime
from api.security import hash_password, hash_token, new_token
from api.settings import Settings, load_settings

STATE_DIR = Path(".rundruf")
TENANT = "Demo GmbH"


@dataclass(frozen=True)
class Login:
    role: str
    email: str
    password: str


def _secret_key_file() -> Path:
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    path = STATE_DIR / "secret.key"
    if not path.exists():
        # Created with 0600 from the start, never world-readable for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
    return path


async def _upsert_user(
    rt: Runtime, email: str, name: str, role: Role, tenant_id: object | None
) -> Login:
    password = secrets.token_urlsafe(9)
    async with rt.db.transaction() as session:
        user = await session.scalar(select(User).where(User.email == email))
        if user is None:
            user = User(email=email, name=name, role=role, tenant_id=tenant_id)
            session.add(user)
        user.password_hash = hash_password(password)
        user.active = True
        user.language = Language.DE
    return Login(role=role.value, email=email, password=password)


async def seed(rt: Runtime) -> list[Login]:
    async with rt.db.transaction() as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.name == TENANT))
        if tenant is None:
            tenant = Tenant(name=TENANT, language=Language.DE, contact_email="it@demo-gmbh.example")
            session.add(tenant)
            await session.flush()
            session.add(
                License(
                    tenant_id=tenant.id,
                    key_hash=hash_token(new_token("rdl")),
                    key_prefix="rdl_demo",
                    seats=50,
                    valid_until=rt.clock() + timedelta(days=365),
                )
            )
        tenant_id = tenant.id
    return [
        await _upsert_user(
            rt, "admin@rundruf.example", "Plattform-Admin", Role.PLATFORM_ADMIN, None
        ),
        await _upsert_user(
            rt, "it@demo-gmbh.example", "IT Demo GmbH", Role.TENANT_ADMIN, tenant_id
        ),
        await _upsert_user(
            rt, "empfang@demo-gmbh.example", "Empfang Demo GmbH", Role.TENANT_VIEWER, tenant_id
        ),
    ]


def _check_login(url: str, login: Login) -> str:
    """Signs in over real HTTP, the way any client would, and asks who we are."""
    body = json.dumps(
        {
            "query": "mutation($e: String!, $p: String!) "
            "{ login(email: $e, password: $p) { user { email role } } }",
            "variables": {"e": login.email, "p": login.password},
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - our own loopback URL
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"demo login failed: {answer['errors']}")
    user = answer["data"]["login"]["user"]
    return f"{user['email']} signed in as {user['role']}"


def run_demo(once: bool, port: int) -> int:
    import uvicorn

    from api.app import create_app
    from api.bootstrap import bootstrap

    settings: Settings = load_settings(
        secret_key_file=_secret_key_file(), cookie_secure=False, port=port, host="127.0.0.1"
    )
    upgrade(settings)
    rt = bootstrap(settings)
    logins = asyncio.run(seed(rt))
    url = f"http://{settings.host}:{settings.port}"
    config = uvicorn.Config(
        create_app(bootstrap(settings)),
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_message_bytes,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            print(f"rundruf demo: the server did not start on {url} (port in use?)")
            return 1
        time.sleep(0.05)

    print(f"\nRundruf demo on the embedded default ({settings.database_url}, no Redis)")
    print(f"  GraphQL API:  {url}/graphql   (WebSocket: ws://{settings.host}:{port}/graphql)")
    print("  Logins (new passwords on every run):")
    for login in logins:
        print(f"    {login.role:<15} {login.email:<28} {login.password}")
    print(f"  check: {_check_login(url, logins[1])}")
    if once:
        server.should_exit = True
        thread.join(timeout=10)
        return 0
    print("\nPress Ctrl-C to stop.")
    try:
        while thread.is_alive():
            thread.join(timeout=0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(timeout=10)
    return 0
