"""A broadcast test bed that dials over SIP: SIPp stands for the PBX and its members."""

from __future__ import annotations

from edge_agent.dialer.sip import SipDialer
from edge_agent.sip.ua import Account
from tests.agent.test_broadcast_executor import Bed


async def dial_through_sipp(bed: Bed, sipp_port: int) -> None:
    """The bed's simulated dialer closed and replaced by the SIP dialer, every call sent
    to the SIPp on 127.0.0.1:`sipp_port` as the account's proxy."""
    await bed.dialer.close()
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", sipp_port), register=False)
    bed.dialer = SipDialer(account, proxy=True)  # type: ignore[assignment]
    bed.broadcasts.dialer = bed.dialer
