"""``rundruf demo``: the embedded default on one machine (SQLite, no Redis).

It seeds a platform admin, a tenant with an admin, a viewer and a license,
serves the API, starts the worker (mail, text-to-speech, watchdog) with a local
SMTP sink that prints every mail, starts the job service and enrols and starts
the real agent process against the SwyxWare simulator, and then plays the
customer's story through the API: sign in to the PBX, see its groups, convert
the alarm group of 20 members, set its announcements, place a trigger call with
the PIN and mode 2, print the history live and then a table. Last it stops the
agent, and the watchdog's mail about it arrives. Passwords are new on every run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import uvicorn
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from api.demo_alarm import run_alarm
from api.demo_mail import HEARTBEAT_FACTOR, MailSink, start_worker
from api.demo_story import Api, DemoError, run_story
from api.migrate import upgrade
from api.models import Installation, Language, License, Role, Tenant, User
from api.runtime import Runtime
from api.security import hash_password, hash_token, new_token
from api.settings import Settings, load_settings

if TYPE_CHECKING:
    from api.demo_kamailio import KamailioBed

STATE_DIR = Path(".rundruf")
TENANT = "Demo GmbH"
# Simulated calls run 5 times faster than real ones: the demo takes a minute, not five.
TIME_SCALE = 0.2


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


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNDRUF_")}


@dataclass(frozen=True)
class JobService:
    url: str
    agent_token: str
    routing_token: str
    process: subprocess.Popen[bytes]


def _start_jobservice() -> JobService | None:
    """The job service of the PBX host, on a free loopback port, with new tokens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    agent_token, routing_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = _clean_env()
    env.update(
        RUNDRUF_JOBSERVICE_PORT=str(port),
        RUNDRUF_JOBSERVICE_DATA_DIR=str((STATE_DIR / "jobservice").resolve()),
        RUNDRUF_JOBSERVICE_AGENT_TOKEN=agent_token,
        RUNDRUF_JOBSERVICE_ROUTING_TOKEN=routing_token,
        RUNDRUF_JOBSERVICE_LOG_LEVEL="WARNING",
    )
    log = (STATE_DIR / "jobservice.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "jobservice"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            headers = {"Authorization": f"Bearer {agent_token}"}
            if httpx.get(url + "/health", headers=headers, timeout=1).status_code == 200:
                return JobService(url, agent_token, routing_token, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    return None


SIP_MEMBERS = Path(__file__).resolve().parent.parent / "ops" / "sip" / "demo_members.xml"


def _start_sip_members() -> tuple[subprocess.Popen[bytes], int] | None:
    """SIPp as the PBX and its members (`--pbx sip`): every call answered, 1 pressed."""
    if shutil.which("sipp") is None:
        print("rundruf demo: --pbx sip needs SIPp (Debian: apt-get install sip-tester)")
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    log = (STATE_DIR / "sipp.log").open("ab")
    command = ["sipp", "-sf", str(SIP_MEMBERS), "-i", "127.0.0.1", "-p", str(port)]
    command += ["-mi", "127.0.0.1", "-ci", "127.0.0.1", "-nostdin", "-m", "100000"]
    process = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: S603 - fixed arguments
    time.sleep(0.5)
    if process.poll() is not None:
        print(f"rundruf demo: SIPp did not start (log: {STATE_DIR / 'sipp.log'})")
        return None
    return process, port


def _agent_env(
    jobservice: JobService, sip_port: int | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = _clean_env()
    state = STATE_DIR.resolve()
    env.update(
        # Chosen here: outside the demo and the tests they have no default.
        RUNDRUF_AGENT_PBX="sim",
        RUNDRUF_AGENT_DIALER="sim",
        RUNDRUF_AGENT_CONFIG_PATH=str(state / "agent.json"),
        RUNDRUF_AGENT_STATE_DIR=str(state / "agent"),
        RUNDRUF_AGENT_SIM_STATE=str(state / "swyx-sim.json"),
        RUNDRUF_AGENT_JOBSERVICE_URL=jobservice.url,
        RUNDRUF_AGENT_JOBSERVICE_TOKEN=jobservice.agent_token,
        RUNDRUF_AGENT_SIM_TIME_SCALE=str(TIME_SCALE),
        RUNDRUF_AGENT_RETRY_PAUSE_SECONDS="3",
    )
    if sip_port is not None:  # real SIP calls through SIPp as the PBX
        env.update(
            RUNDRUF_AGENT_DIALER="sip",
            RUNDRUF_AGENT_SIP_SERVER_PORT=str(sip_port),
            RUNDRUF_AGENT_SIP_REGISTER="false",
        )
    env.update(extra or {})  # --pbx kamailio: the agent registered there (demo_kamailio.py)
    return env


def _start_agent(
    url: str,
    license_key: str,
    jobservice: JobService,
    sip_port: int | None,
    extra: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Enrols and starts the real agent process, as a customer would on the Swyx server."""
    env = _agent_env(jobservice, sip_port, extra)
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


def run_demo(once: bool, port: int, pbx: str = "sim") -> int:
    if pbx != "kamailio":
        return _run_demo(once, port, pbx, None)
    from api.demo_kamailio import missing_tools

    missing = missing_tools()
    if missing:
        print(f"rundruf demo: --pbx kamailio needs {missing}")
        return 1
    bed: list[KamailioBed] = []  # filled once Kamailio runs; stopped whatever happens
    try:
        return _run_demo(once, port, pbx, bed)
    finally:
        for started in bed:
            started.stop()


def _run_demo(once: bool, port: int, pbx: str, kamailio: list[KamailioBed] | None) -> int:
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
    logging.getLogger("edge_agent").setLevel(logging.WARNING)  # the story says what happens
    jobservice = _start_jobservice()
    if jobservice is None:
        print(f"rundruf demo: the job service did not start (log: {STATE_DIR / 'jobservice.log'})")
        return _stop(server, thread, [], 1)
    print(f"  job service (PBX host): {jobservice.url}")
    children = [jobservice.process]
    sink = MailSink(print).start()
    children.append(start_worker(settings, _secret_key_file(), sink.port, STATE_DIR))
    print(f"  worker (mail, text-to-speech, watchdog); mails go to 127.0.0.1:{sink.port}")
    sip_port = None
    if pbx == "sip":
        members = _start_sip_members()
        if members is None:
            return _stop(server, thread, children, 1, sink)
        children.append(members[0])
        sip_port = members[1]
        print(f"  SIP: the agent calls through SIPp as the PBX at 127.0.0.1:{sip_port}")
    extra = None
    if kamailio is not None:
        from api.demo_kamailio import start_bed

        try:
            kamailio.append(start_bed(STATE_DIR, STATE_DIR / "swyx-sim.json", print))
        except DemoError as exc:
            print(f"rundruf demo: {exc}")
            return _stop(server, thread, children, 1, sink)
        extra = kamailio[0].agent_env()
    agent = _start_agent(url, seeded.license_key, jobservice, sip_port, extra)
    children.insert(0, agent)
    try:
        group = run_story(
            url,
            (admin.email, admin.password),
            (platform.email, platform.password),
            print,
        )
        customer = Api(url).login(admin.email, admin.password)
        sim_state = STATE_DIR / "swyx-sim.json"
        routing = (jobservice.url, jobservice.routing_token)
        if kamailio:
            from api.demo_kamailio import run_alarm as run_sip_alarm

            reached = run_sip_alarm(kamailio[0], url, customer, group, print)
        else:
            reached = run_alarm(
                url,
                customer,
                group,
                sim_state,
                routing,
                TIME_SCALE,
                print,
                sip=sip_port is not None,
            )
    except DemoError as exc:
        print(f"rundruf demo: {exc} (agent log: {STATE_DIR / 'agent.log'})")
        return _stop(server, thread, children, 1, sink)
    code = 0 if reached else 2
    if not _agent_goes_silent(agent, children, sink):
        code = 1
    print(f"\n  Website: {url}/   GraphQL API: {url}/graphql")
    print("  Logins (new passwords on every run):")
    for login in seeded.logins:
        print(f"    {login.role:<15} {login.email:<28} {login.password}")
    if once:
        return _stop(server, thread, children, code, sink)
    print("\nEverything but the agent keeps running; press Ctrl-C to stop.")
    try:
        while thread.is_alive() and all(child.poll() is None for child in children):
            thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    return _stop(server, thread, children, 0, sink)


def _agent_goes_silent(
    agent: subprocess.Popen[bytes], children: list[subprocess.Popen[bytes]], sink: MailSink
) -> bool:
    """Stops the agent as if its server went down; the watchdog's mail must arrive."""
    print("\n  Stopping the agent (as if the Swyx server went down) …")
    agent.terminate()
    try:
        agent.wait(10)
    except subprocess.TimeoutExpired:
        agent.kill()
    children.remove(agent)
    # Overdue after k * 5 s without a report; then one watchdog and one mail sweep.
    if sink.wait_for("meldet sich nicht", HEARTBEAT_FACTOR * 5 + 45):
        return True
    print(f"rundruf demo: no heartbeat incident mail arrived (log: {STATE_DIR / 'worker.log'})")
    return False


def _stop(
    server: uvicorn.Server,
    thread: threading.Thread,
    children: list[subprocess.Popen[bytes]],
    code: int,
    sink: MailSink | None = None,
) -> int:
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    server.should_exit = True
    thread.join(timeout=10)
    if sink is not None:
        sink.stop()
    return code
