"""`rundruf jobservice`: the job service on the PBX host, until stopped."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from swyx_jobservice.errors import ConfigurationError, StoreError


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobservice = sub.add_parser(
        "jobservice", help="the job service the PBX call-routing script posts alarms to"
    )
    jobservice.add_argument("--host", help="overrides RUNDRUF_JOBSERVICE_HOST")
    jobservice.add_argument("--port", type=int, help="overrides RUNDRUF_JOBSERVICE_PORT")
    jobservice.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from swyx_jobservice.app import create_app
    from swyx_jobservice.settings import load_settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        app = create_app(settings)
    except (ConfigurationError, StoreError) as exc:
        print(f"rundruf jobservice: {exc.message}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        # Long polls last up to a minute; a stop should not wait for all of them.
        timeout_graceful_shutdown=5,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The job service alone, without the central `rundruf` command around it."""
    parser = argparse.ArgumentParser(prog="swyx_jobservice")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["jobservice", *(argv if argv is not None else sys.argv[1:])])
    return run(args)
