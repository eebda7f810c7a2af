"""A member who puts the call on hold hears nothing meanwhile, hears the message again
from its start on resuming, and the attempt's steps say so (issue 15, point 7).

SIPp plays the member (`uas_hold.xml`, `uas_hold_until_bye.xml`); its SDP names an
RtpSink of the test, which notes when each of our packets arrived.
"""

from __future__ import annotations

import asyncio
import random
import time
import wave
from datetime import datetime
from pathlib import Path

import pytest

from edge_agent.broadcast.model import REPORTED_KINDS, Event
from edge_agent.broadcast.reporter import event_json
from edge_agent.dialer import sip_play
from edge_agent.dialer.port import CallEventKind, CallOutcome
from edge_agent.dialer.sip import SipDialer
from edge_agent.dialer.sip_play import ENDED_ON_HOLD, ENDED_ON_HOLD_QUORUM
from edge_agent.pbx.port import UserState
from tests.agent.dialer_contract import Recorder, assert_well_formed
from tests.agent.sipp_bed import dial_through_sipp
from tests.agent.test_broadcast_executor import Bed, alarm, beds, make_bed, run_to_end
from tests.agent.test_dialer_sip import call_request, dialer
from tests.sip.bed import RtpSink, SippUas, need_sipp

__all__ = ["beds", "dialer"]  # the fixtures, shared with their modules

K = CallEventKind
MESSAGE_S = 2.0


def noise_wav(path: Path, seconds: float) -> Path:
    """A message whose every 20 ms differ: where a packet's payload comes from is plain."""
    rng = random.Random(15)
    samples = b"".join(
        rng.randint(-8000, 8000).to_bytes(2, "little", signed=True)
        for _ in range(int(seconds * 8000))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples)
    return path


def ears(sink: RtpSink) -> dict[str, str]:
    """SIPp keys that make the member's SDP name the sink: our RTP goes there."""
    return {"rtp_port": str(sink.port)}


def seconds(at: datetime) -> float:
    return at.timestamp()


async def test_a_member_on_hold_hears_nothing_and_the_message_again_on_resuming(
    dialer: SipDialer, tmp_path: Path
) -> None:
    """Hold a second into a two-second message for three seconds, then resume and press 1.
    Before: the dialer answered recvonly but kept sending, and with a 1.5 s wait for a
    digit the call ended "answered, not confirmed" while the member was on hold."""
    message = noise_wav(tmp_path / "message.wav", MESSAGE_S)
    with (
        RtpSink() as sink,
        SippUas("uas_hold.xml", tmp_path, keys=ears(sink)) as member,
    ):
        request = call_request(member.uri, message, ring_timeout_s=10.0, dtmf_timeout_s=1.5)
        recorder = Recorder()
        outcome = await asyncio.wait_for(dialer.call(request, recorder), 30)
        assert await asyncio.to_thread(member.wait, 10) == 0, member.log()
        flow = member.flow()
    assert_well_formed(recorder.events, outcome, request)
    assert outcome is CallOutcome.CONFIRMED, recorder.events[-1]
    assert flow.count("< BYE") == 1, flow
    kinds = recorder.kinds
    assert kinds.count(K.HELD) == 1 and kinds.count(K.RESUMED) == 1, kinds
    assert kinds.index(K.ANSWERED) < kinds.index(K.HELD) < kinds.index(K.RESUMED)
    assert kinds.index(K.RESUMED) < kinds.index(K.CONFIRMED)
    held, resumed = seconds(recorder.first(K.HELD).at), seconds(recorder.first(K.RESUMED).at)
    answered = seconds(recorder.first(K.ANSWERED).at)
    assert resumed - held > 2.5  # SIPp holds for three seconds

    before = sink.between(answered, held)
    during = sink.between(held + 0.02, resumed)  # one packet may be on its way at the hold
    after = sink.between(resumed, time.time())
    assert len(before) > 30, len(before)  # about a second of the message
    assert during == [], f"{len(during)} packets sent to a member on hold"
    assert len(after) > 30, len(after)  # the message again, until the 1 is pressed

    # The message starts again from its beginning, as a new talkspurt on the same stream,
    # its RTP clock having run on over the hold.
    first, again = before[0], after[0]
    assert again.payload == first.payload and again.marker
    assert before[-1].payload != first.payload
    assert again.ssrc == first.ssrc
    gap = ((again.timestamp - before[-1].timestamp) % 2**32) / 8000
    assert gap > resumed - held - 0.1, gap


async def test_a_member_back_by_a_reinvite_without_sdp_hears_the_message_again(
    dialer: SipDialer, tmp_path: Path
) -> None:
    """Back the way music on hold does it: a re-INVITE without SDP, the answer a=sendrecv
    in the ACK. Before, the ACK's answer was never read: the member stayed silent (here
    until the 1 pressed on hold ended the call; in a broadcast until its timeout)."""
    message = noise_wav(tmp_path / "message.wav", MESSAGE_S)
    with (
        RtpSink() as sink,
        SippUas("uas_hold_offerless.xml", tmp_path, keys=ears(sink)) as member,
    ):
        request = call_request(member.uri, message, ring_timeout_s=10.0, dtmf_timeout_s=1.5)
        recorder = Recorder()
        outcome = await asyncio.wait_for(dialer.call(request, recorder), 30)
        assert await asyncio.to_thread(member.wait, 10) == 0, member.log()
    assert_well_formed(recorder.events, outcome, request)
    assert outcome is CallOutcome.CONFIRMED, recorder.events[-1]
    kinds = recorder.kinds
    assert kinds.count(K.HELD) == 1 and kinds.count(K.RESUMED) == 1, kinds
    assert kinds.index(K.HELD) < kinds.index(K.RESUMED) < kinds.index(K.CONFIRMED)
    held, resumed = seconds(recorder.first(K.HELD).at), seconds(recorder.first(K.RESUMED).at)
    confirmed = seconds(recorder.first(K.CONFIRMED).at)
    assert 1.5 < resumed - held < 3.0  # SIPp holds for two seconds
    assert sink.between(held + 0.02, resumed) == []
    again = sink.between(resumed, confirmed)
    assert len(again) > 50, len(again)  # a second and a half of the message
    assert again[0].marker and again[0].payload == sink.packets[0].payload  # from its start


async def test_a_broadcast_records_held_and_resumed_in_the_attempts_steps(
    tmp_path: Path, beds: list[Bed]
) -> None:
    need_sipp()
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON}, timeout_s=60)
    beds.append(bed)
    with (
        RtpSink() as sink,
        SippUas("uas_hold.xml", tmp_path, keys=ears(sink)) as pbx,
    ):
        await dial_through_sipp(bed, pbx.port)
        _, events = await run_to_end(bed, alarm())
        assert await asyncio.to_thread(pbx.wait, 10) == 0, pbx.log()
    steps = [e.kind for e in events]
    assert steps == ["started", "ringing", "answered", "held", "resumed", "confirmed", "ended"]
    assert events[-1].outcome == CallOutcome.CONFIRMED
    held, resumed = (seconds(e.at) for e in events if e.kind in ("held", "resumed"))
    assert sink.between(held + 0.02, resumed) == []
    # Reported as they are: the central service stores them as the attempt's steps.
    assert {"held", "resumed"} <= REPORTED_KINDS
    assert [event_json(e, {})["kind"] for e in events][3:5] == ["held", "resumed"]


async def test_a_member_still_on_hold_at_the_broadcast_timeout_is_hung_up_and_it_says_so(
    tmp_path: Path, beds: list[Bed], monkeypatch: pytest.MonkeyPatch
) -> None:
    """a=inactive and never back: the call ends at the broadcast's timeout (4 s), not
    after the wait for a digit, and not later; the member is not called again. (The
    hold begins a second in; its least length, the grace, is made shorter than that.)"""
    need_sipp()
    monkeypatch.setattr(sip_play, "HOLD_GRACE_S", 1.0)
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON}, timeout_s=4)
    beds.append(bed)
    with (
        RtpSink() as sink,
        SippUas("uas_hold_until_bye.xml", tmp_path, keys=ears(sink)) as pbx,
    ):
        await dial_through_sipp(bed, pbx.port)
        broadcast_id, events = await run_to_end(bed, alarm())
        assert await asyncio.to_thread(pbx.wait, 10) == 0, pbx.log()
        flow = pbx.flow()
    assert flow.count("< INVITE") == 1 and flow.count("< BYE") == 1, flow
    steps = [e.kind for e in events]
    assert steps == ["started", "ringing", "answered", "held", "ended"], steps
    end: Event = events[-1]
    assert (end.outcome, end.detail) == (CallOutcome.ANSWERED, ENDED_ON_HOLD)
    broadcast = await bed.broadcasts.journal.get(broadcast_id)
    assert abs(seconds(end.at) - seconds(broadcast.deadline_at)) < 1.0
    held = next(seconds(e.at) for e in events if e.kind == "held")
    assert sink.between(held + 0.02, seconds(end.at)) == []


async def test_a_member_on_hold_when_the_quorum_is_reached_is_hung_up_at_once(
    tmp_path: Path, beds: list[Bed]
) -> None:
    """Quorum 1: Anna confirms after 0.6 s while Bernd holds (a=inactive) from 0.3 s and
    never comes back. Before, Bernd's call kept the broadcast running until its timeout
    (20 s here); now it ends as the quorum is reached, answered, with its own code."""
    need_sipp()
    bed = await make_bed(
        tmp_path,
        {"Anna": UserState.LOGGED_ON, "Bernd": UserState.LOGGED_ON},
        timeout_s=20,
        quorum=1,
    )
    beds.append(bed)
    with SippUas("uas_quorum_hold.xml", tmp_path, calls=2) as pbx:
        await dial_through_sipp(bed, pbx.port)
        started = time.time()
        broadcast_id, events = await run_to_end(bed, alarm())
        took = time.time() - started
        assert await asyncio.to_thread(pbx.wait, 10) == 0, pbx.log()
        flow = pbx.flow()
    assert flow.count("< BYE") == 2, flow
    names = {u["id"]: u["name"] for u in bed.cache.data["directory"]["users"]}
    steps = {name: [e for e in events if names.get(e.pbx_id) == name] for name in ("Anna", "Bernd")}
    assert [e.kind for e in steps["Bernd"]] == ["started", "ringing", "answered", "held", "ended"]
    bernd_end = steps["Bernd"][-1]
    assert (bernd_end.outcome, bernd_end.detail) == (CallOutcome.ANSWERED, ENDED_ON_HOLD_QUORUM)
    assert steps["Anna"][-1].outcome == CallOutcome.CONFIRMED
    broadcast = await bed.broadcasts.journal.get(broadcast_id)
    assert broadcast.quorum_reached_at is not None
    assert abs(seconds(bernd_end.at) - seconds(broadcast.quorum_reached_at)) < 1.0
    assert took < 6.0, took
