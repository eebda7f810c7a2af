"""RTP pacing on loopback: arrival jitter and sender CPU, one pacer against a naive loop.

    .venv/bin/python bench/rtp_pacing.py [--streams 100 500] [--seconds 10] [--no-flood]

For each number of streams N, this process sends N announcements of --seconds
of PCMU (one unconnected UDP socket per stream, sent with sendto, as the SIP
dialer's calls do) to a receiver process on 127.0.0.1, in these ways:

- floor: only the sendto calls of each tick, timed with the process clock, the
  packets built beforehand (what the kernel costs);
- naive: one task ticks every stream, then ``await asyncio.sleep(0.02)``;
- pacer, early=0: `edge_agent.sip.pacer.Pacer` on asyncio's timer alone (where no
  timerfd is: on Linux the timerfd wakes it as in the next two);
- pacer: one lane, woken by a timerfd 0.3 ms early (elsewhere by asyncio 2 ms early)
  and finishing the wait precisely;
- pacer, 4 lanes: the same with the interval cut into four 5 ms slots, a quarter of
  the streams in each (what the SIP dialer uses).

The receiver timestamps every datagram in the kernel (SO_TIMESTAMPNS on Linux,
drained every 2 ms; elsewhere on return from a blocking recv) and, per stream,
takes each arrival interval minus 20 ms after the first half second; the table
gives p50 / p99 / max of its absolute value over all streams, the mean interval
(above 20 ms is drift), the pacer's own tick lateness against the ideal
start + k * 20 ms, and this process's CPU time (user + system) over the run as
a share of one core. The receiver is pinned to the last core when there are
two or more. On loopback each sendto also runs the receiving side of the
kernel's UDP path, so the floor is higher than with a network card.

Flood column (issue 15, point 4): each paced sender runs a second time with the agent's
SIP transport (`edge_agent.sip.transport.UdpTransport` and a `UserAgent`, as the dialer
has them) listening in this process while a stranger's process (tests/sip/flood.py)
sends it 65 KB messages of short header lines, 200 a second (--flood-size,
--flood-rate), for the whole run; the table gives |interval - 20 ms| p99 and max and
the tick lateness p99 of that run, and how many of the stranger's datagrams the
transport refused before parsing, of those sent.

On a machine shared with other work, run it with a real-time priority
(``chrt -f 20 .venv/bin/python bench/rtp_pacing.py``; the receiver inherits it)
so that the figures are the pacer's and not the neighbours'.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import math
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent.sip.g711 import ulaw_encode  # noqa: E402
from edge_agent.sip.message import Request, Response  # noqa: E402
from edge_agent.sip.pacer import FRAME, Pacer, RtpStream  # noqa: E402
from edge_agent.sip.transport import Transport, UdpTransport  # noqa: E402
from edge_agent.sip.ua import Account, UserAgent  # noqa: E402
from tests.sip.flood import SipFlood  # noqa: E402

INTERVAL = 0.020
WARM_UP = 25  # intervals per stream left out (the first half second)
SO_TIMESTAMPNS = 35  # Linux; not exported by the socket module
END = b"END"
HOST = "127.0.0.1"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def pin_receiver() -> None:
    """The receiver on the last core (the phones are other machines); the sender stays free,
    as the agent would be, so that a busy neighbour on one core does not stall it."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[-1]})


def receive() -> None:
    """The receiver process: print the port, collect until END, print the figures as JSON."""
    pin_receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024 * 1024)
    kernel = sys.platform == "linux"
    if kernel:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    arrivals: dict[int, list[int]] = {}
    space = socket.CMSG_SPACE(16)
    # With kernel stamps, drain every 2 ms instead of blocking in recv: a receiver asleep
    # on the socket would be woken by every datagram, and on loopback the sender pays for
    # that wake-up in its own CPU time, which it would not with a network card.
    flags = socket.MSG_DONTWAIT if kernel else 0
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(2048, space, flags)
        except BlockingIOError:
            time.sleep(0.002)
            continue
        if data == END:
            break
        stamp = time.perf_counter_ns()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                stamp = seconds * 1_000_000_000 + nanoseconds
        arrivals.setdefault(int.from_bytes(data[8:12], "big"), []).append(stamp)
    deviations, intervals = [], []
    for stamps in arrivals.values():
        for before, after in zip(stamps[WARM_UP:], stamps[WARM_UP + 1 :], strict=False):
            interval = (after - before) / 1e9
            intervals.append(interval)
            deviations.append(abs(interval - INTERVAL))
    print(
        json.dumps(
            {
                "packets": sum(len(s) for s in arrivals.values()),
                "deviation": [percentile(deviations, p) for p in (0.5, 0.99, 1.0)],
                "mean_interval": statistics.fmean(intervals),
                "kernel_stamps": kernel,
            }
        ),
        flush=True,
    )


def tone(seconds: float) -> bytes:
    count = int(seconds * 8000)
    samples = (round(6000 * math.sin(2 * math.pi * 425 * n / 8000)) for n in range(count))
    return ulaw_encode(struct.pack(f"<{count}h", *samples))


@dataclass(frozen=True)
class Flood:
    """A stranger's flood at the agent's SIP port during a run."""

    size: int
    rate: float


async def send(
    streams: int, seconds: float, sender: str, port: int, flood: Flood | None = None
) -> dict[str, object]:
    # As the SIP dialer's calls: a non-blocking socket per stream, unconnected, sendto.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(streams)]
    for sock in sockets:
        sock.setblocking(False)
        sock.bind((HOST, 0))
    to = (HOST, port)
    senders = [functools.partial(_send, sock.sendto, to) for sock in sockets]
    audio = tone(seconds)
    sip: UdpTransport | None = None
    stranger: SipFlood | None = None
    if flood is not None:
        sip, stranger = await _flooded_sip(flood)
    try:
        if sender == "floor":
            result = await floor(senders, audio)
        else:
            result = await paced(senders, audio, sender)
    finally:
        flood_sent = stranger.stop() if stranger is not None else 0
        if sip is not None:
            sip.close()
    if sip is not None:
        # The code before issue 15's point 4 had no intake: nothing refused, all parsed.
        intake = getattr(sip, "intake", None)
        refused = sum(intake.dropped.values()) if intake is not None else 0
        result["flood"] = {"sent": flood_sent, "refused": refused}
    for sock in sockets:
        sock.close()
    return result


async def _flooded_sip(flood: Flood) -> tuple[UdpTransport, SipFlood]:
    """The agent's SIP transport and user agent on loopback, and the stranger at it."""
    holder: list[UserAgent] = []

    def receive(message: Request | Response, source: tuple[str, int], via: Transport) -> None:
        holder[0].receive(message, source, via)

    sip = await UdpTransport.listen(HOST, 0, receive)
    holder.append(UserAgent(Account("Rundruf", "pw", HOST, (HOST, 9), register=False), sip))
    stranger = SipFlood(sip.local, size=flood.size, rate=flood.rate, shape="headers")
    return sip, stranger.start()


def _send(
    sendto: Callable[[bytes, tuple[str, int]], int], to: tuple[str, int], packet: bytes
) -> None:
    sendto(packet, to)


async def paced(
    senders: list[Callable[[bytes], None]], audio: bytes, sender: str
) -> dict[str, object]:
    remaining = len(senders)
    finished = asyncio.Event()

    def on_done() -> None:
        nonlocal remaining
        remaining -= 1
        if not remaining:
            finished.set()

    rtp = [RtpStream(audio, 0, n + 1, send, on_done) for n, send in enumerate(senders)]
    pacer = None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if sender == "naive":
        while not finished.is_set():
            for stream in rtp:
                stream.tick()
            await asyncio.sleep(INTERVAL)
    else:
        if sender == "pacer-timer":
            pacer = Pacer(early=0.0)
        else:
            pacer = Pacer(lanes=int(sender.rpartition("-")[2]) if "-" in sender else 1)
        for stream in rtp:
            pacer.add(stream)
        task = pacer.start()
        await finished.wait()
        pacer.close()
        await asyncio.gather(task, return_exceptions=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    lateness = list(pacer.lateness)[WARM_UP:] if pacer else []
    return {
        "sent": sum(s.packets for s in rtp),
        "cpu": cpu / wall,
        "lateness": [percentile(lateness, p) for p in (0.5, 0.99, 1.0)] if lateness else None,
    }


async def floor(senders: list[Callable[[bytes], None]], audio: bytes) -> dict[str, object]:
    """CPU of the sends alone: each tick's packets built beforehand, only the sendto timed."""
    batch: list[bytes] = []
    rtp = [RtpStream(audio, 0, n + 1, batch.append) for n in range(len(senders))]
    cpu = 0.0
    ticks = round(len(audio) / FRAME)
    for _ in range(ticks):
        batch.clear()
        for stream in rtp:
            stream.tick()
        started = time.process_time()
        for send, packet in zip(senders, batch, strict=True):
            send(packet)
        cpu += time.process_time() - started
        await asyncio.sleep(INTERVAL)
    return {"sent": ticks * len(rtp), "cpu": cpu / (ticks * INTERVAL), "lateness": None}


def run(streams: int, seconds: float, sender: str, flood: Flood | None = None) -> dict[str, object]:
    command = [sys.executable, __file__, "--receive"]
    receiver = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own argv
    assert receiver.stdout is not None
    try:
        port = int(receiver.stdout.readline())
        result = asyncio.run(send(streams, seconds, sender, port, flood))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            time.sleep(0.2)  # the last packets arrive first
            sock.sendto(END, ("127.0.0.1", port))
        result.update(json.loads(receiver.stdout.readline()))
        return result
    except BaseException:
        receiver.kill()
        raise
    finally:
        receiver.wait(30)


SENDERS = {
    "floor": "floor: the sendto calls only",
    "naive": "naive asyncio.sleep(0.02)",
    "pacer-timer": "pacer, early=0 (timer only)",
    "pacer": "pacer, one lane",
    "pacer-2": "pacer, 2 lanes",
    "pacer-4": "pacer, 4 lanes",
}


def ms(values: object) -> str:
    if not isinstance(values, list):
        return f"{'-':>7}{'-':>7}{'-':>7}"
    return "".join(f"{1000 * v:7.2f}" for v in values)


def flood_columns(r: dict[str, object] | None) -> str:
    """|interval - 20 ms| p99 and max, tick lateness p99, refused/sent of the flood run."""
    if r is None:
        return f"{'-':>7}{'-':>7}{'-':>7}  {'-':>11}"
    deviation = r["deviation"]
    lateness = r["lateness"]
    assert isinstance(deviation, list)
    late = f"{1000 * lateness[1]:7.2f}" if isinstance(lateness, list) else f"{'-':>7}"
    flood = r["flood"]
    assert isinstance(flood, dict)
    refused = f"{flood['refused']}/{flood['sent']}"
    return f"{1000 * deviation[1]:7.2f}{1000 * deviation[2]:7.2f}{late}  {refused:>11}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-flood", action="store_true", help="leave out the flood column")
    parser.add_argument("--flood-size", type=int, default=65_000, help="bytes per datagram")
    parser.add_argument("--flood-rate", type=float, default=200.0, help="datagrams a second")
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        receive()
        return 0
    cores = len(os.sched_getaffinity(0))
    flood = None if args.no_flood else Flood(args.flood_size, args.flood_rate)
    # The intake's own summary of what it refused: the table has the counts.
    logging.getLogger("edge_agent.sip.intake").setLevel(logging.ERROR)
    print(
        f"{args.seconds:g} s of PCMU per stream, one packet per 20 ms, "
        f"python {sys.version.split()[0]}, {cores} cores, receiver pinned to the last"
    )
    if flood is not None:
        print(
            f"flood: a stranger sends the SIP transport {flood.size:,}-byte messages, "
            f"{flood.rate:g} a second, during a second run of each paced sender"
        )
    print(
        f"\n{'streams':>7}  {'sender':<28}{'|interval - 20 ms| ms':>21}"
        f"{'tick lateness ms':>21}{'mean':>8}{'CPU':>6}  {'received':<15}"
        f"{'under a SIP flood, ms':>21}  {'refused/':>11}"
    )
    print(
        f"{'':>7}  {'':<28}{'p50    p99    max':>21}{'p50    p99    max':>21}{'ms':>8}"
        f"{'%':>6}  {'':<15}{'p99    max   late':>21}  {'sent':>11}"
    )
    for streams in args.streams:
        for sender, label in SENDERS.items():
            r = run(streams, args.seconds, sender)
            stamps = "" if r["kernel_stamps"] else " (user-space stamps)"
            paced = sender != "floor"  # the floor's timing says nothing: not shown
            mean = f"{1000 * float(r['mean_interval']):8.3f}" if paced else f"{'-':>8}"
            flooded = run(streams, args.seconds, sender, flood) if paced and flood else None
            received = f"{r['packets']}/{r['sent']}"
            print(
                f"{streams:>7}  {label:<28}{ms(r['deviation'] if paced else None)}"
                f"{ms(r['lateness'])}{mean}{100 * float(r['cpu']):6.1f}"
                f"  {received:<15}{flood_columns(flooded)}{stamps}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
