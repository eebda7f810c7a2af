"""`rundruf-jobservice` (or `rundruf jobservice` where the central service is installed):
the job service on the PBX host, until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from edge_agent import stopping
from swyx_jobservice import exit_codes
from swyx_jobservice.errors import ConfigurationError, StoreError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from swyx_jobservice.settings import JobServiceSettings


HELP = "the job service the PBX call-routing script posts alarms to"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`rundruf jobservice` in the central command."""
    _add_arguments(sub.add_parser("jobservice", help=HELP))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="overrides RUNDRUF_JOBSERVICE_HOST")
    parser.add_argument("--port", type=int, help="overrides RUNDRUF_JOBSERVICE_PORT")
    parser.add_argument(
        stopping.FLAG, dest="stop_with_stdin", action="store_true", help=stopping.HELP
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
        return exit_codes.SETTINGS
    try:
        _serve(app, settings, stop_with_stdin=args.stop_with_stdin)
    except SystemExit as exc:
        # uvicorn's own exit when serving cannot start (a taken port: its code 3, which
        # is not ours to pass on; the service host reads 3 of the agent as "enrol again").
        if exc.code in (None, 0):
            return exit_codes.OK
        print(
            f"rundruf jobservice: cannot serve on {settings.host}:{settings.port} "
            "(see the error above)",
            file=sys.stderr,
        )
        return exit_codes.FAILED
    return exit_codes.OK


def _serve(app: Starlette, settings: JobServiceSettings, *, stop_with_stdin: bool) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        """Tells the store first when asked to stop.

        Long polls last up to a minute; otherwise a stop waits for each of them
        until uvicorn's grace period ends and it cancels them with an error.
        """

        loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.wake_polls()
            super().handle_exit(sig, frame)

        def stop(self) -> None:
            """Ends serving from any thread, as a signal would, but without uvicorn
            raising that signal again once it has stopped (the exit code stays 0)."""
            self.wake_polls()
            self.should_exit = True

        def wake_polls(self) -> None:
            loop = self.loop
            if loop is not None:  # a signal handler or a thread: hand over to the loop
                loop.call_soon_threadsafe(lambda: loop.create_task(app.state.store.stop_waiting()))

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = Server(config)
    if stop_with_stdin:
        stopping.watch_stdin(server.stop)
    server.run()


def main(argv: Sequence[str] | None = None) -> int:
    """`rundruf-jobservice`: the job service alone, without the central `rundruf` command."""
    description = "The Rundruf job service on the PBX host: " + HELP
    parser = argparse.ArgumentParser(prog="rundruf-jobservice", description=description)
    _add_arguments(parser)
    return run(parser.parse_args(argv))
