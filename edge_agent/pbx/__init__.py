"""PBX adapters behind the `Pbx` port (port.py); `make_pbx` picks the configured one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent import platforms
from edge_agent.pbx.port import Pbx

if TYPE_CHECKING:
    from edge_agent.settings import AgentSettings


def make_pbx(settings: AgentSettings) -> Pbx:
    if settings.pbx == "swyx":
        return make_swyx(settings)
    from edge_agent.pbx.sim import SimControl, SimPbx

    control = SimControl(settings.sim_state)
    if control.create(exist_ok=True):
        # The embedded default: a simulated SwyxWare with a small demo company.
        control.seed_demo(n_members=settings.sim_seed_members)
    return SimPbx(settings.sim_state)


def make_swyx(settings: AgentSettings) -> Pbx:
    """The Swyx adapter as configured; nothing Windows-only is imported here."""
    from edge_agent.pbx.swyx import StateReader, SwyxPbx
    from edge_agent.pbx.swyx_com import ComStateReader
    from edge_agent.pbx.swyx_runner import (
        LocalPowerShell,
        PowerShellRunner,
        RemotePowerShell,
        local_command,
        windows_logon_check,
    )

    runner: PowerShellRunner
    if settings.swyx_transport == "winrm":
        runner = RemotePowerShell(
            port=settings.swyx_winrm_port,
            ssl=settings.swyx_winrm_ssl,
            cert_validation=settings.swyx_winrm_cert_validation,
        )
    else:
        runner = LocalPowerShell(local_command(settings.swyx_powershell))
    states: StateReader | None = None
    on_windows = platforms.on_windows()
    if settings.swyx_com_states and on_windows:
        # PBXConfig is initialised with the PBXUser of the dialer's own user (swyx_com.py).
        states = ComStateReader(initialize_as=settings.sip_user)
    password = settings.sip_password.get_secret_value()
    return SwyxPbx(
        runner,
        agent_dir=settings.swyx_agent_dir,
        first_extension=settings.swyx_first_extension,
        timeout_seconds=settings.swyx_timeout_seconds,
        states=states,
        dialer_login=(settings.sip_user, password) if password else None,
        password_check=windows_logon_check if on_windows else None,
    )
