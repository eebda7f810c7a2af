"""How fast a stop reaches ringing SIP calls (issue 17, point 2: "within one second").

    .venv/bin/python bench/broadcast_stop.py [--runs 10] [--members 10]

Each run: a broadcast (the executor on a real journal, members from the simulator's
directory) whose members are SIPp UAS calls on loopback that ring and never answer
(tests/sip/scenarios/uas_no_answer.xml); once every member's phone rings,
`Broadcasts.stop` is called. Printed per run, in ms from that call: the stop journaled
and every ringing call's task cancelled (the return of `stop`), and the broadcast ended
(every CANCEL sent and every call's end journaled). Needs SIPp (sip-tester).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.broadcast.model import Stop
from edge_agent.dialer.sip import SipDialer
from edge_agent.pbx.port import UserState
from edge_agent.sip.ua import Account
from tests.agent.test_broadcast_executor import alarm, make_bed
from tests.sip.bed import SippUas


async def one_run(members: int) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp(prefix="rundruf-stop-"))
    names = {f"M{i:03d}": UserState.LOGGED_ON for i in range(members)}
    bed = await make_bed(tmp, names, timeout_s=120, channels=members)
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account, proxy=False)
    try:
        with SippUas("uas_no_answer.xml", tmp, calls=members) as member:
            for user in bed.cache.data["directory"]["users"]:
                if user["name"] in names:
                    user["extension"] = member.uri.removeprefix("sip:")
            bed.broadcasts.dialer = dialer
            broadcast_id = await bed.broadcasts.accept(alarm())
            while True:
                events = await bed.broadcasts.journal.events(broadcast_id)
                if sum(e.kind == "ringing" for e in events) >= members:
                    break
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            stop = Stop("bench", "website", datetime.now(UTC))
            await bed.broadcasts.stop(stop, broadcast_id=broadcast_id)
            stopped = time.monotonic() - t0
            task = bed.broadcasts.running.get(broadcast_id)
            if task is not None:
                await task
            ended = time.monotonic() - t0
            await asyncio.to_thread(member.wait, 20)
    finally:
        await bed.broadcasts.close()
        await dialer.close()
        await bed.dialer.close()
    return stopped, ended


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--members", type=int, default=10)
    args = parser.parse_args()
    rows = [await one_run(args.members) for _ in range(args.runs)]
    for label, values in (("stop returned", [r[0] for r in rows]), ("ended", [r[1] for r in rows])):
        ms = sorted(v * 1000 for v in values)
        print(f"{label:14} p50 {statistics.median(ms):7.1f} ms  max {ms[-1]:7.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
