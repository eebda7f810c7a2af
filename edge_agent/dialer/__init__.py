"""Dialer adapters behind the `Dialer` port (port.py): `sim` and `sip`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.dialer.port import (
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallRequest,
    Dialer,
    DialerClosed,
    DialerError,
    DuplicateCall,
    EventSink,
)

if TYPE_CHECKING:
    from edge_agent.settings import AgentSettings


def make_dialer(settings: AgentSettings) -> Dialer:
    if settings.dialer == "sip":
        from edge_agent.dialer.sip import SipDialer
        from edge_agent.sip.tls import TlsConfig, server_port
        from edge_agent.sip.ua import Account

        account = Account(
            user=settings.sip_user,
            password=settings.sip_password.get_secret_value(),
            domain=settings.sip_domain,
            server=(
                settings.sip_server_host,
                server_port(settings.sip_transport, settings.sip_server_port),
            ),
            register=settings.sip_register,
        )
        return SipDialer(
            account,
            local=(settings.sip_local_host, settings.sip_local_port),
            transport=settings.sip_transport,
            profile=settings.sip_profile,
            max_parallel=settings.channels,
            check_s=settings.sip_check_seconds,
            tls=TlsConfig(
                server_name=settings.sip_server_host,
                ca_file=settings.sip_tls_ca_file,
                cert_file=settings.sip_tls_cert_file,
                key_file=settings.sip_tls_key_file,
            ),
            srtp=settings.sip_srtp,
            pbx_addresses=settings.pbx_networks,
            called_number=settings.sip_called_number,
            trigger_sources=settings.trigger_networks,
            number_prefixes=settings.number_prefixes,
        )
    from edge_agent.dialer.sim import SimDialer

    return SimDialer(
        settings.sim_state, time_scale=settings.sim_time_scale, max_parallel=settings.channels
    )


__all__ = [
    "CallEvent",
    "CallEventKind",
    "CallOutcome",
    "CallRequest",
    "Dialer",
    "DialerClosed",
    "DialerError",
    "DuplicateCall",
    "EventSink",
    "make_dialer",
]
