"""The ``rundruf`` command: serve, worker, scheduler, db upgrade, admin, demo."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from api.errors import ConfigurationError, RundrufError

if TYPE_CHECKING:
    from api.settings import Settings

# The central service's libraries by import name (pyproject.toml's `server` extra). The
# customer install (`pip install rundruf`) has none; its commands are rundruf-agent and
# rundruf-jobservice, and this command's central parts say so instead of a traceback.
SERVER_LIBRARIES = frozenset(
    {
        "aiosmtpd",
        "aiosqlite",
        "alembic",
        "argon2",
        "cross_web",  # Strawberry's HTTP layer (api/app.py takes its HTTPException)
        "cryptography",
        "dramatiq",
        "graphql",
        "psycopg",
        "redis",
        "sqlalchemy",
        "strawberry",
    }
)


def _serve(args: argparse.Namespace) -> int:
    from api.app import create_app
    from api.bootstrap import bootstrap, configure_logging
    from api.db_wait import wait_for_database
    from api.migrate import require_head
    from api.settings import load_settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(**overrides)
    configure_logging(settings)
    # Booted together with PostgreSQL, serve waits for it instead of exiting.
    wait_for_database(settings)
    require_head(settings)
    run_server(settings, create_app(bootstrap(settings)))
    return 0


def run_server(settings: Settings, app: object) -> None:
    import uvicorn

    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        # The sans-I/O implementation: one protocol object per connection, no extra task.
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_message_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


def _db_upgrade(args: argparse.Namespace) -> int:
    from api.migrate import upgrade
    from api.settings import load_settings

    settings = load_settings()
    upgrade(settings, args.revision)
    print(f"database at {args.revision}")
    return 0


def _create_platform_admin(args: argparse.Namespace) -> int:
    from api.bootstrap import bootstrap
    from api.models import Role
    from api.services import platform
    from api.settings import load_settings

    settings = load_settings()
    password = args.password or getpass.getpass("password: ")
    rt = bootstrap(settings)

    async def create() -> None:
        try:
            user = await platform.create_user(
                rt,
                None,
                email=args.email,
                name=args.name,
                role=Role.PLATFORM_ADMIN,
                password=password,
                tenant_id=None,
            )
            print(f"platform admin {user.email} created")
        finally:
            await rt.db.dispose()

    asyncio.run(create())
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


def _schema(args: argparse.Namespace) -> int:
    from schema.schema import sdl

    sys.stdout.write(sdl())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from api.demo import run_demo

    return run_demo(once=args.once, port=args.port, pbx=args.pbx)


def _until_signalled(run: Callable[[Settings, threading.Event], None]) -> int:
    """Runs a long-lived part until SIGTERM or SIGINT asks it to stop."""
    from api.settings import load_settings

    settings = load_settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(settings, stop)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from workers.runner import run_worker

    return _until_signalled(run_worker)


def _scheduler(args: argparse.Namespace) -> int:
    from workers.runner import run_scheduler

    return _until_signalled(run_scheduler)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rundruf", description="Rundruf central service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the GraphQL API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    up = db.add_parser("upgrade", help="migrate the database to the newest schema")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_db_upgrade)

    admin = sub.add_parser("admin", help="administration").add_subparsers(
        dest="admin", required=True
    )
    cpa = admin.add_parser("create-platform-admin", help="create a platform administrator")
    cpa.add_argument("--email", required=True)
    cpa.add_argument("--name", default="Platform admin")
    cpa.add_argument("--password", help="prompted for when not given")
    cpa.set_defaults(func=_create_platform_admin)

    demo = sub.add_parser("demo", help="run the embedded demo (SQLite, no Redis)")
    demo.add_argument("--once", action="store_true", help="check the demo works, then exit")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--pbx",
        choices=("sim", "sip", "kamailio"),
        default="sim",
        help=(
            "sim: simulated calls; sip: real SIP calls to local SIPp members; kamailio: "
            "the trigger call and the members' calls through Kamailio (source tree only)"
        ),
    )
    demo.set_defaults(func=_demo)

    sub.add_parser(
        "worker", help="run the background workers (mail, text-to-speech, watchdog)"
    ).set_defaults(func=_worker)
    sub.add_parser(
        "scheduler", help="send the periodic sweeps to the workers (needs RUNDRUF_REDIS_URL)"
    ).set_defaults(func=_scheduler)

    sub.add_parser("keygen", help="print a new key for RUNDRUF_SECRET_KEY").set_defaults(
        func=_keygen
    )
    sub.add_parser("schema", help="print the GraphQL SDL").set_defaults(func=_schema)

    # The agent ships alone: its commands live in edge_agent and import nothing central.
    from edge_agent.cli import add_commands

    add_commands(sub)
    # The job service ships alone too: swyx_jobservice imports nothing central.
    from swyx_jobservice.cli import add_commands as add_jobservice_commands

    add_jobservice_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigurationError as err:
        print(f"rundruf: {err.message}", file=sys.stderr)
        return 2
    except RundrufError as err:
        print(f"rundruf: {err.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as err:
        if (err.name or "").partition(".")[0] not in SERVER_LIBRARIES:
            raise
        print(
            f"rundruf: {args.command} is part of the central service, whose libraries are not "
            f"installed ({err.name} is missing): pip install 'rundruf[server]'. "
            "On the PBX host the commands are rundruf-agent and rundruf-jobservice.",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
