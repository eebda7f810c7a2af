"""Settings of the job service, read once at start (prefix ``RUNDRUF_JOBSERVICE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from swyx_jobservice.errors import ConfigurationError

PREFIX = "RUNDRUF_JOBSERVICE_"
MiB = 1024 * 1024
MIN_TOKEN_LENGTH = 16


class JobServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    # Loopback by default: the call-routing script runs on the same host.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # Jobs in data_dir/jobs, tombstones of finished jobs in data_dir/done.
    data_dir: Path = Path(".rundruf/jobservice")
    # The only folder a recordingPath may point into (where the PBX records);
    # unset: jobs must carry their recording in the body.
    recordings_dir: Path | None = None
    # One token per party: the agent reads and deletes, the routing script posts.
    agent_token: SecretStr
    routing_token: SecretStr
    # The body limit covers a base64 recording (4/3 of max_audio_bytes) and the fields.
    max_body_bytes: int = Field(default=12 * MiB, ge=4096)
    max_audio_bytes: int = Field(default=8 * MiB, ge=1024)
    max_recording_seconds: float = Field(default=120.0, gt=0)
    # How long a finished job's key keeps answering a late retry with the old id.
    tombstone_hours: float = Field(default=48.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("agent_token", "routing_token")
    @classmethod
    def _header_safe(cls, value: SecretStr) -> SecretStr:
        # A token that cannot travel in an HTTP header could never match.
        token = value.get_secret_value()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters")
        if not all("!" <= c <= "~" for c in token):
            raise ValueError("must be printable ASCII without spaces")
        return value

    @model_validator(mode="after")
    def _tokens_differ(self) -> JobServiceSettings:
        # The token says which party calls; one token for both would blur that.
        if self.agent_token.get_secret_value() == self.routing_token.get_secret_value():
            raise ValueError("agent_token and routing_token must differ")
        return self


def load_settings(**overrides: Any) -> JobServiceSettings:
    """The settings from the environment, or a ConfigurationError naming each
    bad variable (never its value: two of them are secrets)."""
    try:
        return JobServiceSettings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            name = f"{PREFIX}{where.upper()}" if where else "settings"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ConfigurationError("bad settings: " + "; ".join(problems)) from None
