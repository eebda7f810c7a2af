"""`rundruf agent enroll` and `rundruf agent run`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys

import httpx

from edge_agent import config
from edge_agent.errors import AgentError, ServerRefused
from edge_agent.server import REGISTER, graphql
from edge_agent.settings import VERSION, AgentSettings


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = sub.add_parser("agent", help="the customer agent (Rundruf Manager Service)")
    commands = agent.add_subparsers(dest="agent_command", required=True)
    enroll = commands.add_parser("enroll", help="register this installation with a license")
    enroll.add_argument("--server", required=True, help="https://rundruf.example.com")
    enroll.add_argument("--license", required=True, dest="license_key")
    enroll.add_argument("--hostname", default=socket.gethostname())
    enroll.set_defaults(func=_enroll)
    run = commands.add_parser("run", help="run the agent until stopped")
    run.set_defaults(func=_run)


def _enroll(args: argparse.Namespace) -> int:
    settings = AgentSettings()

    async def register() -> dict[str, str]:
        async with httpx.AsyncClient(timeout=30, verify=settings.verify_tls) as client:
            data = await graphql(
                client,
                args.server.rstrip("/") + "/graphql",
                REGISTER,
                {"key": args.license_key, "host": args.hostname, "version": VERSION},
                None,
            )
        return dict(data["registerInstallation"])

    try:
        enrolled = asyncio.run(register())
    except AgentError as exc:
        print(f"rundruf agent: enrolment failed: {exc}", file=sys.stderr)
        return 1
    config.save(
        settings.config_path,
        config.Enrolment(
            server=args.server, installation_id=enrolled["installationId"], token=enrolled["token"]
        ),
    )
    print(f"enrolled for {enrolled['tenantName']}; configuration in {settings.config_path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from edge_agent.pbx import make_pbx
    from edge_agent.service import AgentService

    settings = AgentSettings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        enrolment = config.load(settings.config_path)
        service = AgentService(settings, enrolment, make_pbx(settings))
        asyncio.run(service.run())
    except ServerRefused as exc:
        print(f"rundruf agent: {exc}; enroll again", file=sys.stderr)
        return 3
    except AgentError as exc:
        print(f"rundruf agent: {exc}", file=sys.stderr)
        return 1
    return 0
