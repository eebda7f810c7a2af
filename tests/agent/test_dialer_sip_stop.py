"""A stopped broadcast's calls over real SIP (issue 17, point 2), SIPp as the member: an
answered call stops its message, plays the stop notice and ends with BYE; a ringing
call of a stopped broadcast is cancelled with CANCEL (the executor cancels it)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.broadcast.model import Stop
from edge_agent.dialer.port import STOPPED, CallOutcome
from edge_agent.dialer.sip import SipDialer
from edge_agent.pbx.port import UserState
from edge_agent.sip.ua import Account
from tests.agent.dialer_contract import Recorder, assert_well_formed
from tests.agent.test_broadcast_executor import Bed, alarm, make_bed
from tests.agent.test_dialer_sip import K, _samples, call_request, tone_wav
from tests.sip.bed import Baresip, SippUas, need_baresip, need_sipp

WAIT_S = 20.0  # a bound on waiting for a state, never a measured time


@pytest.fixture
async def dialer() -> AsyncIterator[SipDialer]:
    need_sipp()
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account, proxy=False)
    yield dialer
    await dialer.close()


async def test_an_answered_call_hears_the_stop_notice_then_gets_a_bye(
    dialer: SipDialer, tmp_path: Path
) -> None:
    message = tone_wav(tmp_path / "message.wav", seconds=20)  # far longer than the test
    notice = tone_wav(tmp_path / "notice.wav", seconds=0.6, frequency=660)
    stopped = asyncio.Event()
    with SippUas("uas_answer.xml", tmp_path, rtp_echo=True) as member:
        request = call_request(
            member.uri,
            message,
            "stop-answered",
            stopped=stopped,
            stop_notice=notice,
            dtmf_timeout_s=30,
        )
        recorder = Recorder()
        call = asyncio.create_task(dialer.call(request, recorder))
        await asyncio.wait_for(recorder.wait_for(K.PLAYING), WAIT_S)
        stopped.set()
        outcome = await asyncio.wait_for(call, WAIT_S)
        assert await asyncio.to_thread(member.wait, 10) == 0, member.log()
        assert member.flow()[-2:] == ["< BYE", "> 200"]
    assert_well_formed(recorder.events, outcome, request)
    assert (outcome, recorder.events[-1].detail) == (CallOutcome.ANSWERED, STOPPED)
    assert recorder.kinds == [K.STARTED, K.RINGING, K.ANSWERED, K.PLAYING, K.PLAYING, K.ENDED]
    assert recorder.events[-2].detail == "stop notice"


async def _rang(bed: Bed, broadcast_id: str) -> bool:
    return any(e.kind == "ringing" for e in await bed.broadcasts.journal.events(broadcast_id))


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    made = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON}, timeout_s=120)
    yield made
    await made.broadcasts.close()
    await made.dialer.close()


async def test_a_ringing_call_of_a_stopped_broadcast_gets_a_cancel(
    bed: Bed, dialer: SipDialer, tmp_path: Path
) -> None:
    with SippUas("uas_no_answer.xml", tmp_path) as member:
        # Anna's phone is the SIPp member; the broadcast calls it over SIP.
        for user in bed.cache.data["directory"]["users"]:
            if user["name"] == "Anna":
                user["extension"] = member.uri.removeprefix("sip:")
        bed.broadcasts.dialer = dialer
        broadcast_id = await bed.broadcasts.accept(alarm())
        async with asyncio.timeout(WAIT_S):
            while True:
                if await _rang(bed, broadcast_id):
                    break
                await asyncio.sleep(0.02)
        stop = Stop("Petra <petra@example.com>", "website", datetime.now(UTC))
        assert await bed.broadcasts.stop(stop, broadcast_id=broadcast_id) == [broadcast_id]
        task = bed.broadcasts.running.get(broadcast_id)
        if task is not None:
            async with asyncio.timeout(WAIT_S):
                await task
        assert await asyncio.to_thread(member.wait, 10) == 0, member.log()
        assert "< CANCEL" in member.flow()
    events = await bed.broadcasts.journal.events(broadcast_id)
    ended = [e for e in events if e.kind == "ended"]
    assert [(e.outcome, e.detail) for e in ended] == [("no_answer", STOPPED)]
    assert (await bed.broadcasts.journal.get(broadcast_id)).status == "cancelled"


def _frequency(samples: list[int], rate: int = 8000) -> float:
    """The tone's frequency from its zero crossings (a pure tone: good to a few Hz)."""
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings * rate / (2 * len(samples))


async def test_a_phone_hears_the_message_then_the_stop_notice(
    dialer: SipDialer, tmp_path: Path
) -> None:
    need_baresip()
    message = tone_wav(tmp_path / "message.wav", seconds=20, frequency=440)
    notice = tone_wav(tmp_path / "notice.wav", seconds=1.0, frequency=1000)
    stopped = asyncio.Event()
    with Baresip(tmp_path) as phone:
        request = call_request(
            phone.uri,
            message,
            "stop-heard",
            stopped=stopped,
            stop_notice=notice,
            dtmf_timeout_s=30,
        )
        recorder = Recorder()
        call = asyncio.create_task(dialer.call(request, recorder))
        await asyncio.wait_for(recorder.wait_for(K.PLAYING), WAIT_S)
        await asyncio.sleep(1.0)  # a second of the message
        stopped.set()
        assert await asyncio.wait_for(call, WAIT_S) is CallOutcome.ANSWERED
        await asyncio.sleep(0.5)
        recordings = phone.recordings()
    assert recordings, "baresip recorded nothing"
    heard = _samples(recordings[0])
    loud = [i for i, s in enumerate(heard) if abs(s) > 1000]
    assert loud, "the phone heard nothing"
    sound = heard[loud[0] : loud[-1] + 1]
    # The message first (440 Hz), the notice last (1000 Hz), then the hang-up.
    assert abs(_frequency(sound[800:4800]) - 440) < 20
    assert abs(_frequency(sound[-4800:-800]) - 1000) < 40
