"""The names the health report gives the PBX adapter and the dialer are the settings'
choices, so the website's "Simulator" label follows what RUNDRUF_AGENT_PBX/DIALER chose."""

from __future__ import annotations

from edge_agent.dialer.sim import SimDialer
from edge_agent.dialer.sip import SipDialer
from edge_agent.pbx.sim import SimPbx
from edge_agent.pbx.swyx import SwyxPbx
from edge_agent.settings import ADAPTER_CHOICES


def test_each_adapter_reports_the_name_it_is_chosen_by() -> None:
    assert {SimPbx.adapter, SwyxPbx.adapter} == set(ADAPTER_CHOICES["pbx"])
    assert {SimDialer.kind, SipDialer.kind} == set(ADAPTER_CHOICES["dialer"])
    assert (SimPbx.adapter, SwyxPbx.adapter, SimDialer.kind, SipDialer.kind) == (
        "sim",
        "swyx",
        "sim",
        "sip",
    )
