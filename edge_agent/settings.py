"""Settings of the agent, read once at start (prefix ``RUNDRUF_AGENT_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge_agent.errors import ConfigurationError
from edge_agent.sip.called_number import parse_prefixes
from edge_agent.sip.peers import Networks, parse_networks

VERSION = "0.1.0"
ENV_PREFIX = "RUNDRUF_AGENT_"

# The PBX adapter and the dialer `agent run` drives. They have no default: an installation
# that forgot them must not run on the simulator and look healthy. Keep in step with the
# Literal types of AgentSettings.pbx and .dialer (a test compares them).
ADAPTER_CHOICES: dict[str, dict[str, str]] = {
    "pbx": {
        "swyx": "SwyxWare",
        "sim": "the SwyxWare simulator, for the demo and tests only",
    },
    "dialer": {
        "sip": "calls over SIP through the PBX",
        "sim": "simulated calls, for the demo and tests only",
    },
}


class AgentBaseSettings(BaseSettings):
    """What every agent command reads; `agent run` reads AgentSettings."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # Written by `rundruf agent enroll`: server URL, installation id and token.
    config_path: Path = Path(".rundruf/agent.json")
    # The ledger of completed commands, the local cache, the PBX login.
    state_dir: Path = Path(".rundruf/agent")
    # SwyxWare (docs/swyx.md): PowerShell here (the agent on the Swyx server, as the
    # service account, a SwyxWare administrator) or over WinRM with the website's login.
    swyx_transport: Literal["local", "winrm"] = "local"
    swyx_powershell: str = "powershell.exe"
    swyx_winrm_port: int = Field(default=5986, ge=1, le=65535)
    swyx_winrm_ssl: bool = True
    swyx_winrm_cert_validation: bool = True
    # Where the agents' PIN files for the call-routing script live, on the Swyx server.
    swyx_agent_dir: str = r"C:\ProgramData\Rundruf\agents"
    swyx_first_extension: int = Field(default=200, ge=0)
    swyx_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    # User states through COM (IpPbxSrv.PBXConfig, needs pywin32); Windows only.
    swyx_com_states: bool = True
    sim_state: Path = Path(".rundruf/swyx-sim.json")
    # A missing simulator state starts as a small company with this many alarm members.
    sim_seed_members: int = Field(default=20, ge=0, le=5000)
    # The job service on the PBX host; unset = not installed (health reports "unknown").
    jobservice_url: str | None = None
    jobservice_token: SecretStr | None = None
    # Verify the server's TLS certificate (off only against a local test server).
    verify_tls: bool = True
    # Reconnect backoff: full jitter up to this cap (seconds).
    backoff_cap_seconds: float = Field(default=30.0, gt=0, le=300)
    # graphql-transport-ws ping from the agent; no pong within the timeout = dead.
    ping_interval_seconds: float = Field(default=20.0, gt=0)
    ping_timeout_seconds: float = Field(default=20.0, gt=0)
    # Broadcasts: calls at once over all broadcasts (the trunk's channels).
    channels: int = Field(default=30, ge=1, le=2000)
    ring_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    # Between two attempts on a member who was not reached.
    retry_pause_seconds: float = Field(default=15.0, ge=0, le=3600)
    max_attempts: int = Field(default=20, ge=1, le=100)
    # The SIP dialer registers as this PBX user (SwyxWare: the user "Rundruf" with a
    # SIP user id and password on its SIP tab) at the PBX, which routes the calls.
    sip_user: str = "Rundruf"
    sip_password: SecretStr = SecretStr("")
    sip_domain: str = "127.0.0.1"
    sip_server_host: str = "127.0.0.1"
    # Unset: 5060, or 5061 with TLS (which also takes 5060 for 5061; sip/tls.py server_port).
    sip_server_port: int | None = Field(default=None, ge=1, le=65535)
    sip_register: bool = True
    # Registered again this often (at the latest): the keep-alive that finds a PBX gone
    # or a login refused long before an alarm (docs/decisions/sip-registration.md).
    sip_check_seconds: float = Field(default=60.0, ge=5, le=3600)
    sip_transport: Literal["UDP", "TCP", "TLS"] = "UDP"
    # SIP over TLS (docs/decisions/sip-tls.md): the PBX's certificate is checked against
    # this CA file (PEM) alone, or, unset, the system's trust store, and must name
    # sip_server_host; a client certificate (PEM, its key inside or in the key file, no
    # passphrase) only when the PBX asks for one. Never a fall-back to TCP or UDP.
    sip_tls_ca_file: Path | None = None
    sip_tls_cert_file: Path | None = None
    sip_tls_key_file: Path | None = None
    # The PBX's other addresses, comma-separated IPs or networks (CIDR, /16 or /48 at
    # the widest): where its own connections and datagrams may come from besides the
    # address its name resolves to (a cluster's nodes, a second interface, the other
    # address family). They count as the PBX, not as strangers (sip/peers.py).
    sip_pbx_addresses: str = ""
    # Who besides the PBX may call the agent (issue 16, review finding 1): IP addresses or
    # networks (CIDR, at most /16 or /48), comma-separated, for a PBX whose calls come from
    # elsewhere (a media gateway, another node). Unset: only the PBX (its name's addresses,
    # sip_pbx_addresses). Everyone else gets 403.
    sip_trigger_sources: str = ""
    sip_local_host: str = "127.0.0.1"
    sip_local_port: int = Field(default=0, ge=0, le=65535)  # 0: any free port
    # Auto-answer / intrusion headers for alarms (edge_agent/dialer/sip_profiles.py).
    sip_profile: Literal["generic", "swyx", "asterisk", "rfc5373", "none"] = "generic"
    # SRTP with SDES keys for the calls' audio (edge_agent/sip/srtp.py): "required" offers
    # only RTP/SAVP and fails a call whose answer brings no key (never plain RTP);
    # "optional" offers the key in RTP/AVP and takes plain RTP from a PBX that ignores
    # it; "off" is plain RTP. Keys go in the SDP: use it with SIP over TLS.
    sip_srtp: Literal["off", "optional", "required"] = "off"
    # Where an incoming call's INVITE names the agent number that was called (issue 16,
    # edge_agent/sip/called_number.py): "auto" takes History-Info's original target,
    # else Diversion's, else the Request-URI's user, else To's; the others only theirs.
    sip_called_number: Literal["auto", "request-uri", "to", "diversion", "history-info"] = "auto"
    # Prefixes the PBX puts before the agent number ("+4930123,0"), comma-separated: a
    # called number with one of them also counts without it. Unset: exact match only.
    sip_number_prefixes: str = ""
    # The agent answers trigger calls to its groups' agent numbers itself over SIP
    # (edge_agent/ivr/, docs/decisions/agent-ivr.md). Unset: yes with the SIP dialer.
    sip_answer_calls: bool | None = None
    # The simulated dialer's delays are multiplied by this (tests and the demo run faster).
    sim_time_scale: float = Field(default=1.0, gt=0, le=10)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("sip_pbx_addresses", "sip_trigger_sources")
    @classmethod
    def _pbx_addresses(cls, value: str) -> str:
        parse_networks(value)  # raises ValueError saying which entry is wrong
        return value

    @property
    def pbx_networks(self) -> Networks:
        """`sip_pbx_addresses`, parsed (validated when the settings were read)."""
        return parse_networks(self.sip_pbx_addresses)

    @field_validator("sip_number_prefixes")
    @classmethod
    def _number_prefixes(cls, value: str) -> str:
        parse_prefixes(value)  # raises ValueError saying which entry is wrong
        return value

    @property
    def number_prefixes(self) -> tuple[str, ...]:
        """`sip_number_prefixes`, parsed, longest first."""
        return parse_prefixes(self.sip_number_prefixes)

    @property
    def trigger_networks(self) -> Networks:
        """`sip_trigger_sources`, parsed (validated when the settings were read)."""
        return parse_networks(self.sip_trigger_sources)


class AgentSettings(AgentBaseSettings):
    """The settings of `agent run`: the PBX adapter and the dialer must be chosen."""

    pbx: Literal["sim", "swyx"]
    dialer: Literal["sim", "sip"]

    @property
    def answers_calls(self) -> bool:
        """Whether the agent takes trigger calls itself (only the SIP dialer can)."""
        wanted = self.sip_answer_calls
        return self.dialer == "sip" and (wanted is None or wanted)


def load_run_settings() -> AgentSettings:
    """The settings of `agent run`, or ConfigurationError in plain words (nothing is read
    or started before): both adapter settings and their choices when one is missing."""
    try:
        # pbx and dialer come from the environment, which mypy cannot see.
        return AgentSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigurationError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """The settings' errors by their variable names; values are echoed only for the
    adapter choices (never a secret)."""
    adapters: dict[str, str] = {}  # field -> what is wrong with it
    missing = False
    others: list[str] = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if field not in ADAPTER_CHOICES:
            others.append(f"{env_name(field)}: {error['msg']}")
        elif error["type"] == "missing":
            adapters[field] = f"{env_name(field)} is not set"
            missing = True
        else:
            adapters[field] = f"{env_name(field)}={error['input']!r} is not a choice"
    lines: list[str] = []
    if missing:
        both = " and ".join(env_name(field) for field in ADAPTER_CHOICES)
        said = "; ".join(adapters.values())
        lines.append(f"{both} have no default and must both be set ({said}):")
        lines += _choices(ADAPTER_CHOICES)
    elif adapters:  # set, but to something else: that value and its setting's choices
        for field, wrong in adapters.items():
            lines.append(f"{wrong}; the choices are:")
            lines += _choices({field: ADAPTER_CHOICES[field]})
    if others:
        lines.append("invalid settings: " + "; ".join(others))
    return "\n".join(lines)


def _choices(settings: dict[str, dict[str, str]]) -> list[str]:
    return [
        f"  {env_name(field)}={value}: {meaning}"
        for field, choices in settings.items()
        for value, meaning in choices.items()
    ]


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


class SimCallSettings(BaseSettings):
    """The job service's routing token for `rundruf agent sim-call`, under the job
    service's own name: the simulated PBX posts as the routing script would."""

    model_config = SettingsConfigDict(env_prefix="RUNDRUF_JOBSERVICE_", extra="ignore")

    routing_token: SecretStr | None = None
