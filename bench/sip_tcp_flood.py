"""Idle TCP connections against the SIP dialer's TCP transport (issue 15, point 5).

    .venv/bin/python bench/sip_tcp_flood.py [--connections 1100] [--sources 110]
        [--limit 1024] [--wait 6]

Linux only (RLIMIT_NOFILE, /proc/self/fd, 127.0.0.x sources). This process lowers its
soft descriptor limit to --limit (1,024: what most Linux services get), starts a
`SipDialer` over TCP and a SIPp member (uas_dtmf_info.xml, over TCP), and first places
one call without any flood (the reference). Then a child process
(tests/sip/tcp_flood.py) opens --connections idle connections from 127.0.0.2 on, spread
over --sources addresses, and the dialer places the same call while they are held.
Prints: descriptors of this process before and during the flood, connections
accepted / refused (StreamTable.dropped), when the flood's connections were closed
(refused ones at once, accepted ones when idle; p50 / max, over --wait seconds), each
call's outcome and duration, and the log records the flood caused (agent and asyncio).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent.dialer.sip import SipDialer  # noqa: E402
from edge_agent.sip.transport import TcpTransport  # noqa: E402
from edge_agent.sip.ua import Account  # noqa: E402
from tests.agent.test_dialer_sip import dial, ended, tone_wav  # noqa: E402
from tests.sip.bed import SippUas, need_sipp  # noqa: E402
from tests.sip.tcp_flood import TcpFlood  # noqa: E402


class Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "asyncio" or record.name.startswith("edge_agent.sip"):
            self.records.append(record)


def descriptors() -> str:
    try:
        return str(len(os.listdir("/proc/self/fd")))
    except OSError as exc:
        return f"none left ({exc.strerror})"


async def call(dialer: SipDialer, uri: str, announcement: Path) -> str:
    started = time.monotonic()
    try:
        recorder = await dial(dialer, uri, announcement)
    except Exception as exc:  # a figure, not a crash
        return f"raised {exc!r} after {time.monotonic() - started:.2f} s"
    outcome, detail = ended(recorder)
    took = time.monotonic() - started
    return f"{outcome.value if outcome else None} in {took:.2f} s" + (
        f" ({detail[:80]})" if detail else ""
    )


async def main(args: argparse.Namespace) -> None:
    import resource

    need_sipp()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.limit, hard))
    tmp = Path(tempfile.mkdtemp(prefix="sip-tcp-flood-"))
    counter = Count()
    logging.getLogger().addHandler(counter)
    logging.getLogger().setLevel(logging.DEBUG)
    announcement = tone_wav(tmp / "announcement.wav")
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account, proxy=False, transport="TCP")
    sources = [f"127.0.0.{2 + i}" for i in range(args.sources)]
    try:
        await dialer.start()
        assert dialer.ua is not None
        transport = dialer.ua.transport
        assert isinstance(transport, TcpTransport)
        port = transport.local[1]
        with SippUas("uas_dtmf_info.xml", tmp, transport="tcp", calls=2) as member:
            uri = member.uri.split(";")[0]
            reference = await call(dialer, uri, announcement)
            await asyncio.sleep(0.5)
            before = descriptors()
            flood = TcpFlood(port, args.connections, sources)
            counter.records.clear()
            await asyncio.to_thread(flood.__enter__)
            try:
                await asyncio.sleep(0.5)
                during = descriptors()
                # Before the limits (run against an older tree) there is no table.
                table = getattr(transport, "table", None)
                held = table.inbound if table is not None else len(transport.streams)
                under_flood = await call(dialer, uri, announcement)
                await asyncio.sleep(max(0.0, args.wait - 0.5))
                report = await asyncio.to_thread(flood.report)
            finally:
                await asyncio.to_thread(flood.stop)
            after = descriptors()
    finally:
        await dialer.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    closed = report["closed_after"]
    refused = [s for s in closed if s < 1.0]
    idle = [s for s in closed if s >= 1.0]
    kinds: dict[str, int] = {}
    for record in counter.records:
        key = f"{record.name}: {record.msg[:40] if isinstance(record.msg, str) else ''}"
        kinds[key] = kinds.get(key, 0) + 1

    def spread(values: list[float]) -> str:
        if not values:
            return "-"
        return f"p50 {statistics.median(values):.3f} s, max {max(values):.3f} s"

    print(f"descriptor limit (soft)        {args.limit}")
    if table is not None:
        limits = table.limits
        print(
            f"caps                           {limits.max_inbound} strangers, "
            f"{limits.max_per_source} per address, idle {limits.message_s:g} s"
        )
    print(f"flood                          {flood.connected} connected of {args.connections}")
    print(f"                               from {args.sources} addresses in {flood.seconds} s")
    print(f"descriptors before/during/after {before} / {during} / {after}")
    print(f"accepted and held              {held}")
    print(f"refused / closed (agent)       {dict(table.dropped) if table else '-'}")
    print(f"closed at once (refused)       {len(refused)}: {spread(refused)}")
    print(f"closed when idle               {len(idle)}: {spread(idle)}")
    print(f"still open after {args.wait:g} s         {report['open']}")
    print(f"call without flood             {reference}")
    print(f"call during flood              {under_flood}")
    print(f"log records during the flood   {len(counter.records)}")
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1])[:6]:
        print(f"    {count:6d}  {kind!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--sources", type=int, default=110)
    parser.add_argument("--limit", type=int, default=1024)
    parser.add_argument("--wait", type=float, default=6.0)
    asyncio.run(main(parser.parse_args()))
