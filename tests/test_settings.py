import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from api.errors import ConfigurationError
from api.settings import load_settings

KEY = Fernet.generate_key().decode()


def test_it_reads_the_embedded_defaults():
    s = load_settings(secret_key=KEY)
    assert s.database_url == "sqlite:///./rundruf.db"
    assert s.async_database_url == "sqlite+aiosqlite:///./rundruf.db"
    assert s.redis_url is None


def test_it_maps_a_plain_postgresql_url_to_psycopg():
    s = load_settings(secret_key=KEY, database_url="postgresql://u@db/rundruf")
    assert s.async_database_url == "postgresql+psycopg://u@db/rundruf"
    assert s.sync_database_url == "postgresql+psycopg://u@db/rundruf"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "RUNDRUF_SECRET_KEY"),
        ({"secret_key": "not-a-key"}, "not a Fernet key"),
        ({"secret_key_file": "/nonexistent/key"}, "cannot read /nonexistent/key"),
        ({"secret_key": KEY, "database_url": "mysql://x/y"}, "RUNDRUF_DATABASE_URL"),
        ({"secret_key": KEY, "database_url": "postgresql+asyncpg://x/y"}, "psycopg"),
        ({"secret_key": KEY, "redis_url": "http://x"}, "RUNDRUF_REDIS_URL"),
        ({"secret_key": KEY, "session_ttl_seconds": 5}, "RUNDRUF_SESSION_TTL_SECONDS"),
        ({"secret_key": KEY, "port": 70000}, "RUNDRUF_PORT"),
        ({"secret_key": KEY, "graphql_max_depth": 0}, "RUNDRUF_GRAPHQL_MAX_DEPTH"),
        (
            {"secret_key": KEY, "metrics_token": "short"},
            "RUNDRUF_METRICS_TOKEN: must be at least 16",
        ),
        (
            # A throttle counter forgotten before its wait ended would let a guess through.
            {"secret_key": KEY, "login_window_seconds": 30, "login_max_delay_seconds": 60},
            "RUNDRUF_LOGIN_WINDOW_SECONDS must be at least RUNDRUF_LOGIN_MAX_DELAY_SECONDS",
        ),
    ],
)
def test_it_refuses_bad_settings_with_a_clear_message(overrides, message):
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    assert message in caught.value.message


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_metrics_token_turns_metrics_off_instead_of_opening_them(monkeypatch, value):
    monkeypatch.setenv("RUNDRUF_METRICS_TOKEN", value)
    assert load_settings(secret_key=KEY).metrics_token is None


def test_it_keeps_a_metrics_token_of_16_characters_or_more(monkeypatch):
    monkeypatch.setenv("RUNDRUF_METRICS_TOKEN", "0123456789abcdef")
    token = load_settings(secret_key=KEY).metrics_token
    assert token is not None and token.get_secret_value() == "0123456789abcdef"


def test_a_retired_login_setting_is_warned_about_not_silently_ignored(monkeypatch, caplog):
    monkeypatch.setenv("RUNDRUF_LOGIN_MAX_FAILURES", "5")
    with caplog.at_level(logging.WARNING, logger="api.settings"):
        load_settings(secret_key=KEY)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "api.settings"]
    assert "RUNDRUF_LOGIN_MAX_FAILURES is no longer used" in warning
    assert "RUNDRUF_LOGIN_FREE_FAILURES" in warning


def test_it_reads_the_key_from_a_file(tmp_path: Path):
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    assert load_settings(secret_key_file=path).fernet_key == KEY.encode()


def test_serve_stops_with_a_message_not_a_stack_trace():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDRUF_")}
    env["RUNDRUF_DATABASE_URL"] = "mysql://nope"
    env["RUNDRUF_SECRET_KEY"] = KEY
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "RUNDRUF_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
