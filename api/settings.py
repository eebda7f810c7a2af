"""Settings of the central service, read once at start (prefix ``RUNDRUF_``).

Nothing else in the central service reads ``os.environ``. A bad value stops the
start with a message that names the setting, never with a stack trace.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.errors import ConfigurationError

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNDRUF_", env_file=None, extra="ignore")

    database_url: str = "sqlite:///./rundruf.db"
    # Unset means the embedded default: in-process broker and pub/sub.
    redis_url: str | None = None

    # Fernet key (urlsafe base64, 32 bytes) that encrypts secrets at rest; or a
    # file holding it. One of the two is required.
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None

    session_cookie_name: str = "rundruf_session"
    session_ttl_seconds: int = Field(default=12 * 3600, ge=300, le=30 * 24 * 3600)
    # Secure cookies need HTTPS; the demo on http://127.0.0.1 turns it off.
    cookie_secure: bool = True

    # Failures of one account from one client address (or on one known device)
    # before each further attempt waits (1 s doubling, at most the max delay);
    # never a lock-out (docs/decisions/login-throttle.md).
    login_free_failures: int = Field(default=3, ge=1, le=100)
    login_max_delay_seconds: int = Field(default=60, ge=1, le=3600)
    # A throttle counter is forgotten this long after its last failure.
    login_window_seconds: int = Field(default=15 * 60, ge=10)
    # At most this many counters are stored; beyond it the least recently used
    # untrusted ones are deleted first.
    login_max_counters: int = Field(default=100_000, ge=10, le=100_000_000)
    # The signed cookie that marks a browser as known to an account after a sign-in.
    device_cookie_name: str = "rundruf_device"
    device_cookie_days: int = Field(default=365, ge=1, le=3650)

    graphql_max_depth: int = Field(default=10, ge=2, le=50)
    graphql_max_aliases: int = Field(default=15, ge=1, le=500)
    graphql_max_tokens: int = Field(default=2000, ge=100, le=100_000)
    graphql_ide: bool = False
    ws_allowed_origins: list[str] = Field(default_factory=list)
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # A socket must sign in with connection_init this soon (graphql-transport-ws 4408).
    ws_init_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Open sockets per client address and process; an agent holds one.
    ws_max_per_client: int = Field(default=50, ge=1, le=100_000)

    upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    announcement_max_seconds: int = Field(default=300, ge=1, le=3600)
    tts_max_chars: int = Field(default=2000, ge=10, le=20_000)

    # --- text-to-speech (workers/tts/) -----------------------------------------
    # espeak: espeak-ng (installed by `make`); coqui: a local coqui-tts model (extra [coqui]).
    tts_engine: Literal["espeak", "coqui"] = "espeak"
    # One synthesis may take this long before it is stopped and the announcement fails.
    tts_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    tts_espeak_binary: str = "espeak-ng"
    tts_espeak_words_per_minute: int = Field(default=150, ge=80, le=450)
    # The model (checkpoint) and its config.json; nothing is ever downloaded.
    tts_coqui_model_path: Path | None = None
    tts_coqui_config_path: Path | None = None
    # The Python with coqui-tts installed; unset: the one running the worker.
    tts_coqui_python: Path | None = None
    # The languages the model speaks (a multilingual model is told which one).
    tts_coqui_languages: list[Literal["de", "en"]] = ["de"]
    # For a multi-speaker model: which speaker; unset: the model's first.
    tts_coqui_speaker: str | None = None

    @model_validator(mode="after")
    def _coqui_model_given(self) -> Settings:
        if self.tts_engine == "coqui" and None in (
            self.tts_coqui_model_path,
            self.tts_coqui_config_path,
        ):
            raise ValueError(
                "RUNDRUF_TTS_ENGINE=coqui needs RUNDRUF_TTS_COQUI_MODEL_PATH "
                "and RUNDRUF_TTS_COQUI_CONFIG_PATH"
            )
        return self

    command_expiry_seconds: int = Field(default=15 * 60, ge=10)
    # An alarm triggered on the website waits this long for an agent that is offline:
    # taken up late it still calls everyone (marked late); expired, it leaves a failed
    # trigger in the history and a mail (docs/decisions/late-broadcasts.md).
    alarm_command_expiry_seconds: int = Field(default=24 * 3600, ge=10)

    # --- watchdog and metrics -------------------------------------------------
    # A heartbeat is overdue after this many of the tenant's poll intervals.
    watchdog_heartbeat_factor: int = Field(default=3, ge=2, le=100)
    # Support gets every incident mail too (in its own language); unset: tenants only.
    support_email: str | None = None
    support_language: Literal["de", "en"] = "de"
    # Days before a license ends when its tenant is told (and once more when it ended).
    license_warning_days: list[int] = Field(default_factory=lambda: [30, 7, 1])
    # GET /metrics answers only with this bearer token; unset, it answers 404.
    metrics_token: SecretStr | None = None

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- workers, scheduler and mail (workers/) -------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    # none: plain (a local relay); starttls: upgrade on this port (587); tls: TLS at once (465).
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    mail_from: str = "Rundruf <rundruf@localhost>"
    # A row in `sending` longer than this is taken to belong to a crashed worker.
    mail_lease_seconds: int = Field(default=300, ge=5, le=24 * 3600)
    # Temporary errors wait base * 2^(attempt-1), at most the cap; after the last attempt: failed.
    mail_retry_base_seconds: int = Field(default=30, ge=1, le=3600)
    mail_retry_cap_seconds: int = Field(default=3600, ge=1, le=24 * 3600)
    mail_max_attempts: int = Field(default=12, ge=1, le=100)
    mail_batch_size: int = Field(default=50, ge=1, le=1000)
    mail_sweep_seconds: float = Field(default=15.0, gt=0, le=3600)
    watchdog_sweep_seconds: float = Field(default=60.0, gt=0, le=3600)
    tts_sweep_seconds: float = Field(default=30.0, gt=0, le=3600)
    # The mail delivery log and the embedded scheduler's lock file live here.
    worker_state_dir: Path = Path(".rundruf/worker")
    worker_threads: int = Field(default=8, ge=1, le=256)
    # GET /metrics of a worker process on 127.0.0.1; unset: no listener.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Prefix of Dramatiq's keys in Redis (and of the scheduler's lease).
    worker_namespace: str = Field(default="rundruf-dramatiq", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    scheduler_lease_seconds: float = Field(default=15.0, ge=1, le=600)

    @field_validator("mail_from")
    @classmethod
    def _mail_address(cls, value: str) -> str:
        from email.utils import parseaddr

        _, address = parseaddr(value)
        if "\r" in value or "\n" in value or "@" not in address:
            raise ValueError("must be an address like 'Rundruf <rundruf@example.com>'")
        return value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _metrics_token(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            # RUNDRUF_METRICS_TOKEN= (empty) means unset: /metrics answers 404, it is not
            # open to anyone who sends no token.
            return None
        if isinstance(raw, str) and len(raw.strip()) < 16:
            raise ValueError("must be at least 16 characters (or unset to turn /metrics off)")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "sqlite+aiosqlite:///", "postgresql")):
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        if value.startswith("postgresql") and not value.startswith(
            ("postgresql+psycopg://", "postgresql://")
        ):
            raise ValueError("PostgreSQL is reached through psycopg 3: postgresql+psycopg://…")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _window_holds_the_longest_wait(self) -> Settings:
        # A counter deleted before its wait ended would let the next guess through early.
        if self.login_window_seconds < self.login_max_delay_seconds:
            raise ValueError(
                "RUNDRUF_LOGIN_WINDOW_SECONDS must be at least RUNDRUF_LOGIN_MAX_DELAY_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _one_key_source(self) -> Settings:
        if self.secret_key is None and self.secret_key_file is None:
            raise ValueError(
                "set RUNDRUF_SECRET_KEY or RUNDRUF_SECRET_KEY_FILE "
                "(a Fernet key; `rundruf keygen` prints one)"
            )
        return self

    @cached_property
    def fernet_key(self) -> bytes:
        if self.secret_key is not None:
            raw = self.secret_key.get_secret_value().strip().encode()
        else:
            assert self.secret_key_file is not None
            try:
                raw = self.secret_key_file.read_bytes().strip()
            except OSError as exc:
                raise ConfigurationError(
                    f"RUNDRUF_SECRET_KEY_FILE: cannot read {self.secret_key_file}: {exc.strerror}"
                ) from None
        try:
            Fernet(raw)
        except ValueError:
            raise ConfigurationError(
                "the secret key is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
        return raw

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def async_database_url(self) -> str:
        """The same database through its asyncio driver."""
        url = self.database_url
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
        if url.startswith("postgresql://"):
            return "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url

    @property
    def sync_database_url(self) -> str:
        """The same database through a blocking driver (migrations, CLI)."""
        url = self.database_url
        if url.startswith("sqlite+aiosqlite:///"):
            return "sqlite:///" + url.removeprefix("sqlite+aiosqlite:///")
        if url.startswith("postgresql://"):
            return "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url


# Settings that no longer exist, and what took their place: a deployment that
# still sets one is told at start instead of having it silently ignored.
RETIRED = {
    "RUNDRUF_LOGIN_MAX_FAILURES": (
        "the login throttle never locks an account any more; "
        "see RUNDRUF_LOGIN_FREE_FAILURES and RUNDRUF_LOGIN_MAX_DELAY_SECONDS"
    ),
}


def load_settings(**overrides: object) -> Settings:
    """Read and check the settings; a bad value raises ConfigurationError."""
    for name, instead in RETIRED.items():
        if name in os.environ:
            log.warning("%s is no longer used and is ignored: %s", name, instead)
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "RUNDRUF_" + "_".join(str(p) for p in err["loc"]).upper() if err["loc"] else ""
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {message}" if name else message)
        raise ConfigurationError("invalid settings:\n  " + "\n  ".join(lines)) from None
    settings.fernet_key  # noqa: B018 - fail at start, not on first use
    return settings
