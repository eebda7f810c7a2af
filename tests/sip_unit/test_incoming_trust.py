"""Who may call the agent, and what an incoming call holds (review of issue 16): only
the PBX and configured sources get their INVITE taken (finding 1)."""

from __future__ import annotations

import asyncio

from edge_agent.sip.incoming import IncomingCalls
from edge_agent.sip.peers import parse_networks
from tests.sip_unit.loopback_ua import loopback_ua
from tests.sip_unit.test_incoming_dialog import Router, final, invite
from tests.sip_unit.udp_peers import Peer

OTHER = "127.0.0.2"  # another loopback address: not the PBX


async def test_a_call_from_the_pbx_is_taken_one_from_elsewhere_refused() -> None:
    """Finding 1: the PBX (127.0.0.1, the account's server) gets 200; 127.0.0.2 gets 403
    and the router never hears of its call."""
    pbx = Peer(phone=True)
    stranger = Peer(OTHER, phone=True)
    try:
        ua, transport = await loopback_ua(pbx.address)
        router = Router()
        ua.incoming = incoming = IncomingCalls(ua, router)
        pbx.agent = stranger.agent = transport.local
        stranger.send(invite(stranger, call_id="stranger"))
        refused = await final(stranger)
        assert refused.status == 403
        assert incoming.refused_strangers == 1
        pbx.send(invite(pbx, call_id="pbx"))
        assert (await final(pbx)).status == 200
        await asyncio.sleep(0.1)
        assert "stranger" not in incoming.calls
        assert "pbx" in incoming.calls
        await ua.close()
    finally:
        pbx.close()
        stranger.close()


async def test_a_configured_trigger_source_may_call() -> None:
    """RUNDRUF_AGENT_SIP_TRIGGER_SOURCES (here 127.0.0.0/30) widens who may call."""
    pbx = Peer()
    gateway = Peer(OTHER, phone=True)
    try:
        ua, transport = await loopback_ua(pbx.address)
        ua.incoming = IncomingCalls(ua, Router(), trusted=parse_networks("127.0.0.0/30"))
        gateway.agent = transport.local
        gateway.send(invite(gateway))
        assert (await final(gateway)).status == 200
        await ua.close()
    finally:
        pbx.close()
        gateway.close()
