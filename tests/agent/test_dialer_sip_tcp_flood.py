"""A running call while a stranger pipelines requests into the agent's SIP over TCP as
fast as it can (issue 15, the outside review of point 5).

Before, the TCP path had no rate and no bound per read: one read of 256 KiB was 700
OPTIONS handled in one go, 300 ms on the loop; a stranger on its 8 connections stalled
the RTP pacer for up to 1.9 s (682 slots skipped) and the call's setup took 7 s. Now a
stranger's messages pay the UDP intake's tokens (the stream stops reading while they
are short) and all streams share 2 ms of work per loop pass (sip/stream_turns.py).

A real call to a SIPp member over TCP whose SDP points the media at this test's
receiver, which stamps every RTP packet in the kernel; the flood (tests/sip/
tcp_pipeline.py) runs in a process of its own from before the INVITE to after the BYE.
"""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

from edge_agent.dialer.port import CallOutcome
from edge_agent.dialer.sip import SipDialer
from edge_agent.sip.transport import TcpTransport
from edge_agent.sip.ua import Account
from tests.agent.test_dialer_sip import dial, ended, tone_wav
from tests.agent.test_dialer_sip_flood import PACING_P99_S, StampedSink, p99
from tests.sip.bed import SippUas, need_sipp
from tests.sip.tcp_pipeline import TcpPipeline

HOST = "127.0.0.1"
STRANGER = "127.0.0.50"


async def test_a_strangers_tcp_pipeline_leaves_a_running_calls_audio_paced(
    tmp_path: Path,
) -> None:
    need_sipp()
    seconds = 10.0
    announcement = tone_wav(tmp_path / "announcement.wav", seconds)
    account = Account("Rundruf", "secret", HOST, (HOST, 9), register=False)
    dialer = SipDialer(account, proxy=False, transport="TCP")
    try:
        await dialer.start()
        assert dialer.ua is not None
        sip = dialer.ua.transport
        assert isinstance(sip, TcpTransport)
        with (
            StampedSink() as ears,
            SippUas(
                "uas_answer_rtp_to.xml", tmp_path, transport="tcp", keys={"rx_port": str(ears.port)}
            ) as member,
        ):
            with TcpPipeline((HOST, sip.local[1]), source=STRANGER) as flood:
                time.sleep(0.5)  # noqa: ASYNC251 -- the flood under way before the INVITE
                started = time.monotonic()
                target = member.uri.split(";")[0] + ";transport=tcp"
                recorder = await dial(dialer, target, announcement, dtmf_timeout_s=0.5)
                took = time.monotonic() - started
            assert member.wait(10) == 0, member.log()
        lateness = list(dialer.pacer.lateness)
    finally:
        await dialer.close()

    assert ended(recorder) == (CallOutcome.ANSWERED, "no confirmation within 0.5 s")
    assert took < seconds + 3.0, f"the call took {took:.1f} s"  # was 22 s (7 s to set up)
    assert flood.sent > 1000, (flood.sent, flood.answers)  # it ran, and was answered some
    assert flood.answers > 0
    expected = round(seconds * 50)
    stamps = [stamp for stamp, _ in ears.packets]
    assert len(stamps) == expected, f"{len(stamps)} of {expected} packets"
    deviation = [abs(b - a - 0.020) for a, b in pairwise(stamps)]
    assert p99(deviation) < PACING_P99_S, f"p99 {1000 * p99(deviation):.1f} ms"
    assert max(deviation) < 0.100, f"max {1000 * max(deviation):.1f} ms"  # was 1.9 s
    assert p99(lateness) < PACING_P99_S, f"lateness p99 {1000 * p99(lateness):.1f} ms"
    assert dialer.pacer.skipped == 0
    # The stranger was held to its rate, not served as fast as it wrote.
    assert sip.table.delayed["rate-source"] > 0, sip.table.delayed
