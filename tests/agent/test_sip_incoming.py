"""The agent answers calls itself (issue 16, point 1): real SIPp callers dial the agent's
user agent on loopback, over UDP and TCP. Before, every INVITE got 603."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.ivr.port import CallerGone, CallerLine
from tests.agent.sip_incoming_bed import HOST, Numbers, answering_ua, tone
from tests.sip.bed import SippUac, need_pcap_play, need_sipp
from tests.sip.caller_rtp import Keys, Wait
from tests.sip.trigger_caller import Dtmf, TriggerCaller


async def _nothing(line: CallerLine) -> None:
    raise AssertionError("the handler must not run")


def _caller(caller: TriggerCaller, tmp_path: Path, port: int, transport: str) -> SippUac:
    """The trigger caller dialling 299 at the agent's user agent itself."""
    scenario, media = caller.write(tmp_path / f"caller-{caller.dtmf}-{transport}")
    # SIPp sends a pcap's RTP from the port its [media_port] keyword gave out, and from
    # port 0 when the SDP names [rtp_port] instead: the agent hears only the SDP's port.
    scenario.write_text(scenario.read_text().replace("m=audio [rtp_port]", "m=audio [media_port]"))
    keys = {"domain": HOST, "caller": caller.caller, "caller_name": caller.caller_name}
    return SippUac(
        f"sip:299@{HOST}:{port}",
        tmp_path,
        scenario=str(scenario),
        keys=keys,
        media=media,
        transport=transport,
        timeout=30,
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("diverted", "configured", "limit", "status"),
    [("4711", True, 20, "404"), ("299", False, 20, "480"), ("299", True, 0, "486")],
)
async def test_refusals(
    tmp_path: Path, transport: str, diverted: str, configured: bool, limit: int, status: str
) -> None:
    """An unknown number gets 404, any call without configuration 480, a call beyond the
    limit of calls at once 486; the original number in Diversion decides (the
    Request-URI names the "Rundruf" account). Before, every INVITE got 603."""
    need_sipp()
    router = Numbers(_nothing, configured=configured)
    async with answering_ua(router, transport, limit=limit) as ua:
        port = ua.transport.local[1]
        with SippUac(
            f"sip:Rundruf@{HOST}:{port}",
            tmp_path,
            scenario="uac_refused.xml",
            keys={"diverted": diverted},
            transport=transport,
            timeout=15,
        ) as sipp:
            code = await asyncio.to_thread(sipp.wait, 30)
    assert code == 0, sipp.log()
    assert f"< {status}" in sipp.flow(), sipp.flow()
    if limit:
        assert router.invites[0].called == (diverted, "Rundruf")
        assert router.invites[0].caller_number == "100"
        assert router.invites[0].caller_name == "Pforte"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("dtmf", ["rfc4733", "info"])
async def test_keys_reach_the_handler(tmp_path: Path, transport: str, dtmf: Dtmf) -> None:
    """An accepted call: the prompt plays (barge-in), the caller's keys come by RFC 4733
    or SIP INFO into read_digits, and our hang-up is a BYE the caller answers."""
    need_sipp()
    if dtmf == "rfc4733":
        need_pcap_play()
    got: list[str] = []
    heard: list[str] = []

    async def handler(line: CallerLine) -> None:
        heard.append(line.caller_number)
        await line.play(tone(3.0))  # the first key stops it
        got.append(await line.read_digits(8, 4.0, "#"))
        got.append(await line.read_digits(1, 4.0, None))
        await line.hang_up()

    router = Numbers(handler)
    caller = TriggerCaller([Wait(1.0), Keys("4711#"), Wait(0.5), Keys("2"), Wait(3)], dtmf=dtmf)
    async with answering_ua(router, transport) as ua:
        with _caller(caller, tmp_path, ua.transport.local[1], transport) as sipp:
            code = await asyncio.to_thread(sipp.wait, 30)
    assert code == 0, sipp.log()
    assert got == ["4711", "2"]
    assert heard == ["100"]
    assert sipp.flow()[-2:] == ["< BYE", "> 200"], sipp.flow()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_caller_hangs_up(tmp_path: Path, transport: str) -> None:
    """The caller's BYE: the handler waiting for keys gets CallerGone, at once."""
    need_sipp()
    need_pcap_play()
    outcome: list[str] = []

    async def handler(line: CallerLine) -> None:
        try:
            await line.read_digits(8, 20.0, "#")
        except CallerGone:
            outcome.append("gone")
            raise
        outcome.append("no")

    router = Numbers(handler)
    caller = TriggerCaller([Wait(1.0)], hang_up=True)
    async with answering_ua(router, transport) as ua:
        with _caller(caller, tmp_path, ua.transport.local[1], transport) as sipp:
            code = await asyncio.to_thread(sipp.wait, 30)
        for _ in range(50):
            if outcome:
                break
            await asyncio.sleep(0.05)
    assert code == 0, sipp.log()
    assert outcome == ["gone"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_cancel_before_the_answer(tmp_path: Path, transport: str) -> None:
    """A CANCEL while the call rings: 200 for it, 487 for the INVITE, the handler never
    runs, and the call's slot is free once the ACK came."""
    need_sipp()
    router = Numbers(_nothing, ring_s=5.0)
    async with answering_ua(router, transport) as ua:
        port = ua.transport.local[1]
        with SippUac(
            f"sip:299@{HOST}:{port}",
            tmp_path,
            scenario="uac_cancel.xml",
            transport=transport,
            timeout=15,
        ) as sipp:
            code = await asyncio.to_thread(sipp.wait, 30)
        assert code == 0, sipp.log()
        assert ua.incoming is not None
        for _ in range(50):
            if not ua.incoming.calls:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        assert not ua.incoming.calls  # type: ignore[attr-defined]
        assert not ua.dialogs
    assert sipp.flow() == ["> INVITE", "< 100", "< 180", "> CANCEL", "< 200", "< 487", "> ACK"]
