"""From the trigger call's last key to the members' INVITEs, through Kamailio (issue 16).

    .venv/bin/python bench/ivr_trigger.py [--sizes 20 200 500] [--runs 5] [--keep]

Needs kamailio, SIPp and root or CAP_NET_RAW (SIPp plays the caller's RTP from a pcap;
the observer reads lo through a packet socket). On a machine shared with other work,
run it as ``chrt -r 20 .venv/bin/python ...`` so the figures are ours.

The set-up, once per size N: Kamailio (tests/sip/kamailio.py, digest auth on calls as
well, 407 first) with N member users 2001.., a caller 1000 and "Rundruf"; one SIPp
answering every member's call (tests/sip/scenarios/kam_uas_dtmf_info.xml: 180, 200, 1
as SIP INFO a second later), its contact registered at Kamailio for the N extensions;
the agent in this process, as `rundruf agent run` builds it: the SIP dialer registered
at Kamailio as "Rundruf" with N channels (RUNDRUF_AGENT_CHANNELS, a trunk that large),
the broadcast manager with its journal, the agent's own IVR (edge_agent/ivr/answering.py)
answering calls to the group's agent number 7001, which Kamailio routes to "Rundruf"
with Diversion. What is not here: the channel to the central service (the history is
reported after the calls start, off this path) and the SwyxWare adapter (the simulator
gives the directory).

A run: SIPp calls 7001 from 1000 through Kamailio (tests/sip/trigger_caller.py) and
presses the PIN, #, 2 (alarm) and 1 (confirm) as RFC 4733 events, each key when the IVR
asks for it (tests/e2e_kamailio/timelines.py); the alarm then calls all N members; the
run ends when the broadcast finished (every member pressed 1).

The method: an observer process with a packet socket on lo (a kernel BPF filter: UDP
from the caller's media port, and UDP to Kamailio's port; each packet stamped by the
kernel as it is sent) sees the caller's RFC 4733 packets and every INVITE sent to
Kamailio. t0 is the first packet of the last key (the 1's key-down, the marker packet;
its end packet comes 160 ms later, the agent may act on either); "first" is the first
INVITE that leaves the agent's SIP port for a member, "all" the N-th distinct Call-ID's
first INVITE (the 407's answer, the same INVITE again with credentials, is not counted).
Both in ms after t0, p50 and p99 (nearest rank) over the runs. A warm-up run per size
comes first and is not counted. The targets: first INVITE under 100 ms at p99; all 500
within 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import log, percentile
from bench.packet_filter import udp_ports
from edge_agent.broadcast.manager import Broadcasts
from edge_agent.broadcast.runner import CallSettings
from edge_agent.cache import LocalCache
from edge_agent.dialer.sip import SipDialer
from edge_agent.ivr.answering import IvrAnswering, Refusal
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import (
    DEFAULT_ADMIN_PASSWORD,
    DEFAULT_ADMIN_USER,
    DEFAULT_HOST,
    SimControl,
    SimPbx,
)
from edge_agent.pbx.sim_state import SimState, StateFile
from edge_agent.sip.incoming import Accept, IncomingInvite, Refuse
from tests.e2e_kamailio.members import SippMembers
from tests.e2e_kamailio.timelines import alarm
from tests.sip.caller_rtp import PT_EVENT
from tests.sip.caller_rtp import SSRC as CALLER_SSRC
from tests.sip.kamailio import Kamailio
from tests.sip.trigger_caller import TriggerCaller

SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
AGENT_NUMBER = "7001"
CALLER = "1000"
PIN = "271828"
END = b"END"


# --- the observer (its own process) ------------------------------------------------------


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", value[:16])
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return time.time_ns()


def _call_id(message: bytes) -> str:
    head = message.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() in ("call-id", "i"):
            return value.strip()
    return ""


def observe(sip_port: int, media_port: int) -> None:
    """Prints its control port, collects until END arrives there, prints JSON:
    `keys` [[ssrc, rtp timestamp, first stamp, end stamp]], `invites` [[source port, Call-ID,
    stamp]] (the first INVITE of each Call-ID)."""
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    # To Kamailio, or from the caller's SIPp (it plays its pcap from `media_port`).
    code = ctypes.create_string_buffer(udp_ports(("destination", sip_port), ("source", media_port)))
    program = struct.pack("HL", len(code) // 8, ctypes.addressof(code))
    sniff.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
    sniff.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024 * 1024)
    sniff.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sniff.bind(("lo", 0))
    control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    control.bind(("127.0.0.1", 0))
    control.setblocking(False)
    print(control.getsockname()[1], flush=True)
    space = socket.CMSG_SPACE(16)
    keys: dict[tuple[int, int], list[int]] = {}
    invites: dict[str, tuple[int, int]] = {}
    while True:
        busy = False
        with contextlib.suppress(BlockingIOError):
            while True:
                frame, ancillary, _, address = sniff.recvmsg(65536, space, socket.MSG_DONTWAIT)
                busy = True
                if address[2] != socket.PACKET_OUTGOING:  # lo shows each packet twice
                    continue
                udp = 14 + 4 * (frame[14] & 0x0F)
                source, destination = struct.unpack("!HH", frame[udp : udp + 4])
                payload = frame[udp + 8 :]
                stamp = _stamp(ancillary)
                if destination == sip_port:
                    if payload.startswith(b"INVITE "):
                        invites.setdefault(_call_id(payload), (source, stamp))
                elif source == media_port and len(payload) >= 16 and payload[1] & 0x7F == PT_EVENT:
                    event = (
                        int.from_bytes(payload[8:12], "big"),
                        int.from_bytes(payload[4:8], "big"),
                    )
                    seen = keys.setdefault(event, [stamp, 0])
                    if payload[13] & 0x80 and not seen[1]:
                        seen[1] = stamp
        with contextlib.suppress(BlockingIOError):
            if control.recv(64).startswith(END):
                break
        if not busy:
            time.sleep(0.001)
    result = {
        "keys": [[*event, *stamps] for event, stamps in sorted(keys.items())],
        "invites": [[port, call_id, stamp] for call_id, (port, stamp) in invites.items()],
    }
    print(json.dumps(result), flush=True)


class Observer:
    def __init__(self, sip_port: int, media_port: int) -> None:
        command = [sys.executable, __file__, "--observe", str(sip_port), str(media_port)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            raise RuntimeError("the observer did not start (root or CAP_NET_RAW is needed)")
        self.port = int(line)

    def finish(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        time.sleep(0.1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(END, ("127.0.0.1", self.port))
        result: dict[str, Any] = json.loads(self.process.stdout.readline())
        self.process.wait(10)
        return result


# --- the agent, in this process ------------------------------------------------------------


class Router:
    """What `rundruf agent run` installs on its dialer: the IVR's routing as the SIP
    side's router (called-number candidates in, a refusal or the dialogue out)."""

    def __init__(self, ivr: IvrAnswering) -> None:
        self.ivr = ivr

    def route(self, invite: IncomingInvite) -> Refuse | Accept:
        decided = self.ivr.route(invite.called)
        if isinstance(decided, Refusal):
            return Refuse(decided.status, decided.reason)

        async def handler(line: Any) -> None:
            await decided(line)

        return Accept(handler)


@dataclass
class Agent:
    dialer: SipDialer
    broadcasts: Broadcasts
    ivr: IvrAnswering
    port: int = 0

    async def close(self) -> None:
        await self.ivr.close()
        await self.broadcasts.close()
        await self.dialer.close()


async def start_agent(folder: Path, pbx: Kamailio, extensions: list[str]) -> Agent:
    sim = SimControl(folder / "swyx.json")
    sim.create(first_extension=7000, last_extension=7099)

    def seed(state: SimState) -> tuple[str, str]:
        on = UserState.LOGGED_ON
        ids = [state.add_user(f"Mitglied {e}", "", e, False, on).id for e in extensions]
        agent = state.add_user("Rundruf Bench", "", AGENT_NUMBER, True, on)
        return state.add_group("Bench", "", [*ids, agent.id]).id, agent.id

    group_id, agent_id = StateFile(sim.state_path).update(seed)
    directory_pbx = SimPbx(sim.state_path)
    await directory_pbx.login(DEFAULT_HOST, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD)
    state_dir = folder / "agent"
    cache = LocalCache(state_dir)
    cache.set_directory(await directory_pbx.directory())
    cache.update_settings({"broadcastTimeoutSeconds": 60})
    cache.broadcast_groups[group_id] = {
        "agentUserId": agent_id,
        "extension": AGENT_NUMBER,
        "pin": PIN,
        "announcements": {},
        "quorum": None,
        "repetitions": 1,
    }
    cache.save()
    channels = len(extensions)
    dialer = SipDialer(pbx.agent_account(), proxy=True, max_parallel=channels)
    calls = CallSettings(ring_timeout_s=30, retry_pause_s=1, max_attempts=2)
    broadcasts = Broadcasts(state_dir, cache, directory_pbx, dialer, channels, calls)
    ivr = IvrAnswering(state_dir, cache, broadcasts)
    await ivr.prepare()
    dialer.answer_calls(Router(ivr))
    await dialer.start()
    deadline = time.monotonic() + 30
    while not pbx.bindings("Rundruf"):
        if time.monotonic() > deadline:
            raise RuntimeError("the agent did not register at Kamailio")
        await asyncio.sleep(0.2)
    assert dialer.ua is not None
    return Agent(dialer, broadcasts, ivr, dialer.ua.transport.local[1])


# --- a size ----------------------------------------------------------------------------


@dataclass
class Run:
    first_ms: float
    all_ms: float
    invites: int
    end_ms: float  # the last key's end packet after its first


@dataclass
class Size:
    n: int
    runs: list[Run] = field(default_factory=list)


def measure(seen: dict[str, Any], agent_port: int, n: int) -> Run:
    # Only the caller's stream (its port and SSRC): other tests on this host send keys too.
    keys = sorted((first, end) for ssrc, _, first, end in seen["keys"] if ssrc == CALLER_SSRC)
    if not keys:
        raise RuntimeError("the observer saw no RFC 4733 key from the caller")
    pressed, ended = keys[-1]  # the last key: the confirmation
    ours = sorted(stamp for port, _, stamp in seen["invites"] if port == agent_port)
    if len(ours) < n:
        ports = sorted({port for port, _, _ in seen["invites"]})
        raise RuntimeError(f"{len(ours)} INVITEs from port {agent_port}, {n} expected ({ports})")
    return Run(
        (ours[0] - pressed) / 1e6, (ours[n - 1] - pressed) / 1e6, len(ours), (ended - pressed) / 1e6
    )


async def run_size(n: int, runs: int, folder: Path) -> Size:
    extensions = [str(2001 + i) for i in range(n)]
    users = {name: secrets.token_urlsafe(9) for name in [*extensions, CALLER, "Rundruf"]}
    size = Size(n)
    with Kamailio(folder, users=users, agent_numbers={AGENT_NUMBER: "Rundruf"}) as pbx:
        log(f"N={n}: Kamailio on {pbx.port}; registering {n} members")
        members = SippMembers(folder, pbx, extensions, calls=n * (runs + 1), timeout=600)
        await asyncio.to_thread(members.__enter__)
        agent = await start_agent(folder, pbx, extensions)
        try:
            for index in range(runs + 1):
                run = await one_run(agent, pbx, folder / f"run{index}", n)
                if index == 0:
                    log(f"N={n} warm-up: first {run.first_ms:.1f} ms, all {run.all_ms:.1f} ms")
                    continue
                size.runs.append(run)
                log(f"N={n} run {index}: first {run.first_ms:.1f} ms, all {run.all_ms:.1f} ms")
        finally:
            await agent.close()
            await asyncio.to_thread(members.__exit__, None, None, None)
    return size


async def one_run(agent: Agent, pbx: Kamailio, folder: Path, n: int) -> Run:
    caller = TriggerCaller(alarm(PIN, "2"), caller=CALLER)
    sipp = caller.dial(folder, pbx.address, AGENT_NUMBER, auth=(CALLER, pbx.password(CALLER)))
    observer = Observer(pbx.port, sipp.media_port)
    running_before = set(agent.broadcasts.running)
    try:
        await asyncio.to_thread(sipp.start)
        code = await asyncio.to_thread(sipp.wait, 120)
        if code != 0:
            raise RuntimeError(f"the trigger call failed ({code}): {sipp.log()}")
        # The broadcast runs until every member confirmed; the next run starts after.
        for broadcast_id, task in list(agent.broadcasts.running.items()):
            if broadcast_id not in running_before:
                await asyncio.wait_for(task, 120)
    finally:
        sipp.stop()
        seen = await asyncio.to_thread(observer.finish)
    return measure(seen, agent.port, n)


def table(sizes: list[Size]) -> str:
    lines = [
        "| members | runs | first INVITE p50 | first INVITE p99 | all INVITEs p50 "
        "| all INVITEs p99 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        first = [r.first_ms for r in size.runs]
        every = [r.all_ms for r in size.runs]
        lines.append(
            f"| {size.n} | {len(size.runs)} | {percentile(first, 50):.1f} ms | "
            f"{percentile(first, 99):.1f} ms | {percentile(every, 50):.1f} ms | "
            f"{percentile(every, 99):.1f} ms |"
        )
    return "\n".join(lines)


def verdicts(sizes: list[Size]) -> list[str]:
    out = []
    for size in sizes:
        first99 = percentile([r.first_ms for r in size.runs], 99)
        ok = "met" if first99 < 100 else "MISSED"
        out.append(f"N={size.n}: first INVITE p99 {first99:.1f} ms < 100 ms: {ok}")
        if size.n == 500:
            all99 = percentile([r.all_ms for r in size.runs], 99)
            ok = "met" if all99 < 1000 else "MISSED"
            out.append(f"N=500: all INVITEs p99 {all99:.1f} ms < 1000 ms: {ok}")
    return out


async def bench(sizes: Sequence[int], runs: int, keep: bool) -> list[Size]:
    folder = Path(tempfile.mkdtemp(prefix="ivr-trigger-"))
    results = []
    try:
        for n in sizes:
            results.append(await run_size(n, runs, folder / f"n{n}"))
    finally:
        if keep:
            log(f"files kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 200, 500])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the run's files")
    parser.add_argument("--observe", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.observe:
        observe(*args.observe)
        return 0
    # SIGTERM as Ctrl-C: the run's finally blocks stop Kamailio and SIPp.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    for tool in ("kamailio", "sipp"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (bash ops/ensure-services.sh)", file=sys.stderr)
            return 2
    sizes = asyncio.run(bench(args.sizes, args.runs, args.keep))
    print(table(sizes))
    print()
    for line in verdicts(sizes):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
