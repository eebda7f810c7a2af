"""1,100 idle TCP connections against the SIP dialer's TCP transport, with the
descriptor limit most Linux services run under (a soft RLIMIT_NOFILE of 1,024), and
then a real call over TCP to a SIPp member (issue 15, point 5).

Before the limits the connections took every descriptor: the call failed (its
announcement could not even be opened) and asyncio logged "socket.accept() out of
system resource" thousands of times in a few seconds. The connections come from a
child process (tests/sip/tcp_flood.py), spread over 127.0.0.2-111, so only the
agent's side counts against the lowered limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent import platforms
from edge_agent.dialer.port import CallOutcome
from edge_agent.dialer.sip import SipDialer
from edge_agent.sip.ua import Account
from tests.agent.test_dialer_sip import dial, ended, tone_wav
from tests.sip.bed import SippUas, need_sipp
from tests.sip.tcp_flood import TcpFlood

pytestmark = pytest.mark.skipif(
    not platforms.on_linux(), reason="RLIMIT_NOFILE, /proc/self/fd and 127.0.0.x are Linux's"
)

LINUX_DEFAULT_SOFT_LIMIT = 1024
CONNECTIONS = 1100
SOURCES = [f"127.0.0.{i}" for i in range(2, 112)]  # ten each; 127.0.0.1 is the member's
MESSAGE_S = 5.0  # stream_limits.MESSAGE_S: an idle stranger's connection lives this long


@contextlib.contextmanager
def descriptor_limit(soft: int) -> Iterator[None]:
    import resource

    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < soft:
        pytest.skip(f"the hard descriptor limit ({hard}) is below {soft}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (before, hard))


def open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # EMFILE: listing needs one more
        return -1


def sip_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asyncio" or r.name.startswith("edge_agent")]


async def test_1100_idle_connections_leave_room_for_a_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    need_sipp()
    caplog.set_level(logging.INFO)
    announcement = tone_wav(tmp_path / "announcement.wav")
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    with descriptor_limit(LINUX_DEFAULT_SOFT_LIMIT):
        dialer = SipDialer(account, proxy=False, transport="TCP")
        try:
            await dialer.start()
            assert dialer.ua is not None
            port = dialer.ua.transport.local[1]
            before = open_descriptors()
            with SippUas("uas_dtmf_info.xml", tmp_path, transport="tcp") as member:
                flood = TcpFlood(port, CONNECTIONS, SOURCES)
                await asyncio.to_thread(flood.__enter__)
                try:
                    assert flood.connected == CONNECTIONS
                    await asyncio.sleep(0.5)  # every connection accepted or refused
                    during = open_descriptors()
                    recorder = await dial(dialer, member.uri.split(";")[0], announcement)
                    assert member.wait(10) == 0, member.log()
                    await asyncio.sleep(MESSAGE_S + 1.0 - 0.5)
                    report = await asyncio.to_thread(flood.report)
                finally:
                    await asyncio.to_thread(flood.stop)
        finally:
            await dialer.close()
    assert ended(recorder)[0] is CallOutcome.CONFIRMED, ended(recorder)
    # Accepted strangers hold at most 256 descriptors (a quarter of the limit).
    assert 0 < during - before <= 256 + 16, (before, during)
    # Every one closed: refused at once or idle after MESSAGE_S.
    assert report["open"] == 0
    closed_after = report["closed_after"]
    assert max(closed_after) <= MESSAGE_S + 1.0
    assert sum(1 for s in closed_after if s >= MESSAGE_S - 0.5) == 256
    records = sip_records(caplog)
    assert len(records) <= 40, [r.getMessage()[:100] for r in records[:50]]


async def test_when_descriptors_run_out_anyway_asyncios_accept_lines_are_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Something else holds the descriptors (here: pipes): accept() fails, asyncio
    retries each second and logs each failure; the agent's filter keeps a few."""
    need_sipp()
    caplog.set_level(logging.INFO)
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    filler: list[socket.socket] = []
    with descriptor_limit(LINUX_DEFAULT_SOFT_LIMIT):
        dialer = SipDialer(account, proxy=False, transport="TCP")
        try:
            await dialer.start()
            assert dialer.ua is not None
            port = dialer.ua.transport.local[1]
            flood = TcpFlood(port, 300, SOURCES[:60])
            try:
                with contextlib.suppress(OSError):
                    while True:
                        filler.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                for _ in range(8):  # room for the pipes to the flood, a few more
                    filler.pop().close()
                await asyncio.to_thread(flood.__enter__)
                await asyncio.sleep(3.0)
            finally:
                for sock in filler:
                    sock.close()
                await asyncio.to_thread(flood.stop)
        finally:
            await dialer.close()
    failures = [r for r in caplog.records if r.name == "asyncio"]
    assert 1 <= len(failures) <= 6, [r.getMessage()[:80] for r in failures[:10]]
