"""``rundruf demo``: the embedded default on one machine (SQLite, no Redis).

It seeds a platform admin, a tenant with an admin, a viewer and a license,
serves the API, enrols and starts the real agent process against the SwyxWare
simulator, and then plays the customer's first steps through the API: sign in
to the PBX, see its groups, convert the alarm group. Passwords are new on
every run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import uvicorn
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from api.demo_story import DemoError, run_story
from api.migrate import upgrade
from api.models import Installation, Language, License, Role, Tenant, User
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


@dataclass(frozen=True)
class Seeded:
    logins: list[Login]
    license_key: str


async def seed(rt: Runtime) -> Seeded:
    """The demo tenant with a license; the key is new on every run, older agents revoked."""
    key = new_token("rdl")
    async with rt.db.transaction() as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.name == TENANT))
        if tenant is None:
            tenant = Tenant(name=TENANT, language=Language.DE, contact_email="it@demo-gmbh.example")
            session.add(tenant)
            await session.flush()
        lic = await session.scalar(select(License).where(License.tenant_id == tenant.id))
        if lic is None:
            lic = License(
                tenant_id=tenant.id, key_hash="", key_prefix="", seats=50, valid_until=rt.clock()
            )
            session.add(lic)
        lic.key_hash, lic.key_prefix = hash_token(key), key[:10]
        lic.valid_until, lic.revoked_at = rt.clock() + timedelta(days=365), None
        await session.execute(
            update(Installation)
            .where(Installation.tenant_id == tenant.id, Installation.revoked_at.is_(None))
            .values(revoked_at=rt.clock())
        )
        tenant_id = tenant.id
    logins = [
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
    return Seeded(logins=logins, license_key=key)


def _agent_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDRUF_")}
    state = STATE_DIR.resolve()
    env.update(
        RUNDRUF_AGENT_CONFIG_PATH=str(state / "agent.json"),
        RUNDRUF_AGENT_STATE_DIR=str(state / "agent"),
        RUNDRUF_AGENT_SIM_STATE=str(state / "swyx-sim.json"),
    )
    return env


def _start_agent(url: str, license_key: str) -> subprocess.Popen[bytes]:
    """Enrols and starts the real agent process, as a customer would on the Swyx server."""
    env = _agent_env()
    command = [sys.executable, "-m", "api.cli", "agent"]
    subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
        [*command, "enroll", "--server", url, "--license", license_key, "--hostname", "demo-swyx"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    log = (STATE_DIR / "agent.log").open("ab")
    return subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        [*command, "run"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread] | None:
    from api.app import create_app
    from api.bootstrap import bootstrap

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
            return None
        time.sleep(0.05)
    return server, thread


def run_demo(once: bool, port: int) -> int:
    from api.bootstrap import bootstrap

    settings: Settings = load_settings(
        secret_key_file=_secret_key_file(), cookie_secure=False, port=port, host="127.0.0.1"
    )
    upgrade(settings)
    seeded = asyncio.run(seed(bootstrap(settings)))
    url = f"http://{settings.host}:{settings.port}"
    served = _serve(settings)
    if served is None:
        print(f"rundruf demo: the server did not start on {url} (port in use?)")
        return 1
    server, thread = served
    platform, admin = seeded.logins[0], seeded.logins[1]
    print(f"\nRundruf demo on the embedded default ({settings.database_url}, no Redis)")
    print(f"  central service: {url}/graphql (HTTP and WebSocket)")
    agent = _start_agent(url, seeded.license_key)
    try:
        run_story(
            url,
            (admin.email, admin.password),
            (platform.email, platform.password),
            print,
        )
    except DemoError as exc:
        print(f"rundruf demo: {exc} (agent log: {STATE_DIR / 'agent.log'})")
        return _stop(server, thread, agent, 1)
    print("  Logins (new passwords on every run):")
    for login in seeded.logins:
        print(f"    {login.role:<15} {login.email:<28} {login.password}")
    if once:
        return _stop(server, thread, agent, 0)
    print("\nPress Ctrl-C to stop.")
    try:
        while thread.is_alive() and agent.poll() is None:
            thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    return _stop(server, thread, agent, 0)


def _stop(
    server: uvicorn.Server, thread: threading.Thread, agent: subprocess.Popen[bytes], code: int
) -> int:
    agent.terminate()
    try:
        agent.wait(10)
    except subprocess.TimeoutExpired:
        agent.kill()
    server.should_exit = True
    thread.join(timeout=10)
    return code
