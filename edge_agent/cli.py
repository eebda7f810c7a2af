"""The agent's commands: `rundruf-agent enroll|run|sim-call` on the PBX host (the customer
install), and the same as `rundruf agent ...` where the central service is installed."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from edge_agent import config, exit_codes, stopping
from edge_agent.errors import AgentError, ConfigurationError, NotEnrolled, ServerRefused
from edge_agent.server import REGISTER, graphql
from edge_agent.settings import VERSION, AgentBaseSettings, SimCallSettings, load_run_settings

DESCRIPTION = "The Rundruf agent (Rundruf Manager Service) on the PBX host"


def main(argv: Sequence[str] | None = None) -> int:
    """`rundruf-agent`: the agent alone, without the central `rundruf` command around it."""
    parser = argparse.ArgumentParser(prog="rundruf-agent", description=DESCRIPTION)
    _add_agent_commands(parser.add_subparsers(dest="agent_command", required=True))
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`rundruf agent ...` in the central command."""
    agent = sub.add_parser("agent", help="the customer agent (Rundruf Manager Service)")
    _add_agent_commands(agent.add_subparsers(dest="agent_command", required=True))


def _add_agent_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    enroll = commands.add_parser("enroll", help="register this installation with a license")
    enroll.add_argument("--server", required=True, help="https://rundruf.example.com")
    enroll.add_argument("--license", required=True, dest="license_key")
    enroll.add_argument("--hostname", help="default: this computer's name")
    enroll.set_defaults(func=_enroll)
    run = commands.add_parser("run", help="run the agent until stopped")
    run.add_argument(stopping.FLAG, dest="stop_with_stdin", action="store_true", help=stopping.HELP)
    run.set_defaults(func=_run)
    _add_sim_call(commands)


def _add_sim_call(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    call = commands.add_parser(
        "sim-call", help="call an agent number on the SwyxWare simulator, as a caller would"
    )
    call.add_argument("--to", required=True, help="the agent number (the agent user's extension)")
    call.add_argument("--from", dest="caller_number", default="", help="the caller's number")
    call.add_argument("--name", dest="caller_name", help="the caller's name")
    call.add_argument(
        "--digits",
        required=True,
        help='keys per question, comma-separated: PIN, menu, confirmation, e.g. "123456,2,1" '
        "(an empty entry is silence; when they run out the caller hangs up)",
    )
    call.add_argument("--recording", type=Path, help="the WAV the caller records for mode 3")
    call.add_argument("--state", type=Path, help="overrides RUNDRUF_AGENT_SIM_STATE")
    call.add_argument("--jobservice-url", help="overrides RUNDRUF_AGENT_JOBSERVICE_URL")
    call.add_argument(
        "--routing-token",
        help="overrides RUNDRUF_JOBSERVICE_ROUTING_TOKEN (better the variable: ps shows arguments)",
    )
    call.add_argument("--time-scale", type=float, default=1.0, help="waits times this factor")
    call.set_defaults(func=_sim_call)


def _enroll(args: argparse.Namespace) -> int:
    settings = AgentBaseSettings()
    hostname = args.hostname or socket.gethostname()

    async def register() -> dict[str, str]:
        async with httpx.AsyncClient(timeout=30, verify=settings.verify_tls) as client:
            data = await graphql(
                client,
                args.server.rstrip("/") + "/graphql",
                REGISTER,
                {"key": args.license_key, "host": hostname, "version": VERSION},
                None,
            )
        return dict(data["registerInstallation"])

    try:
        enrolled = asyncio.run(register())
    except AgentError as exc:
        print(f"rundruf agent: enrolment failed: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    config.save(
        settings.config_path,
        config.Enrolment(
            server=args.server, installation_id=enrolled["installationId"], token=enrolled["token"]
        ),
    )
    print(f"enrolled for {enrolled['tenantName']}; configuration in {settings.config_path}")
    return exit_codes.OK


def _run(args: argparse.Namespace) -> int:
    # First of all: without a chosen PBX adapter and dialer nothing is read or started.
    try:
        settings = load_run_settings()
    except ConfigurationError as exc:
        print(f"rundruf agent: {exc}\nNothing was started.", file=sys.stderr)
        return exit_codes.SETTINGS
    from edge_agent.pbx import make_pbx
    from edge_agent.service import AgentService

    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        enrolment = config.load(settings.config_path)
        service = AgentService(settings, enrolment, make_pbx(settings))
        # What start-up made (modules, settings, the service) lives as long as the
        # process: frozen, a full collection no longer scans it, which shortens the
        # pauses the RTP pacer has to wait through during an alarm.
        gc.freeze()
        work = service.run()
        asyncio.run(stopping.until_stdin_closes(work) if args.stop_with_stdin else work)
    except NotEnrolled as exc:
        print(f"rundruf agent: {exc}\nNothing was started.", file=sys.stderr)
        return exit_codes.NOT_ENROLLED
    except ServerRefused as exc:
        print(f"rundruf agent: {exc}; enroll again with {config.ENROL_COMMAND}", file=sys.stderr)
        return exit_codes.REFUSED
    except AgentError as exc:
        print(f"rundruf agent: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    return exit_codes.OK


def _sim_call(args: argparse.Namespace) -> int:
    from edge_agent.pbx.sim_trigger import Outcome, place_trigger_call

    settings = AgentBaseSettings()
    url = args.jobservice_url or settings.jobservice_url
    secret = SimCallSettings().routing_token
    token = args.routing_token or (secret.get_secret_value() if secret else "")
    if not url or not token:
        print(
            "rundruf agent sim-call: the job service URL and routing token are needed",
            file=sys.stderr,
        )
        return 2
    try:
        recording = args.recording.read_bytes() if args.recording else None
        result = asyncio.run(
            place_trigger_call(
                args.state or settings.sim_state,
                url,
                token,
                args.to,
                args.digits.split(","),
                caller_number=args.caller_number,
                caller_name=args.caller_name,
                recording=recording,
                time_scale=args.time_scale,
            )
        )
    except (OSError, ValueError) as exc:
        print(f"rundruf agent sim-call: {exc}", file=sys.stderr)
        return 2
    print(f"outcome: {result.outcome.value}")
    if result.job_id:
        print(f"job: {result.job_id} (key {result.idempotency_key})")
    print("heard: " + (", ".join(result.prompts) or "nothing"))
    if result.delays:
        print("waited: " + ", ".join(f"{d:.1f} s" for d in result.delays))
    if result.notices:
        print(f"wrong-PIN notices sent: {result.notices}")
    return 0 if result.outcome is Outcome.POSTED else 1
