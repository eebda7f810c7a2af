"""PBX adapters behind the `Pbx` port (port.py); `make_pbx` picks the configured one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.pbx.port import Pbx

if TYPE_CHECKING:
    from edge_agent.settings import AgentSettings


def make_pbx(settings: AgentSettings) -> Pbx:
    from edge_agent.pbx.sim import SimControl, SimPbx

    control = SimControl(settings.sim_state)
    if control.create(exist_ok=True):
        # The embedded default: a simulated SwyxWare with a small demo company.
        control.seed_demo(n_members=settings.sim_seed_members)
    return SimPbx(settings.sim_state)
