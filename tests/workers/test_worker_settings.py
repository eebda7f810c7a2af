"""Bad worker and mail settings stop the start with a message that names them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from api.errors import ConfigurationError
from api.settings import load_settings
from tests.conftest import SECRET_KEY
from tests.processes import RUNDRUF, clean_env


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"smtp_security": "ssl"}, "RUNDRUF_SMTP_SECURITY"),
        ({"smtp_port": 0}, "RUNDRUF_SMTP_PORT"),
        ({"mail_from": "rundruf"}, "RUNDRUF_MAIL_FROM: must be an address"),
        ({"mail_from": "R <r@x.test>\r\nBcc: all@x.test"}, "RUNDRUF_MAIL_FROM"),
        ({"mail_max_attempts": 0}, "RUNDRUF_MAIL_MAX_ATTEMPTS"),
        ({"worker_namespace": "two words"}, "RUNDRUF_WORKER_NAMESPACE"),
        ({"scheduler_lease_seconds": 0.5}, "RUNDRUF_SCHEDULER_LEASE_SECONDS"),
        ({"worker_metrics_port": 70000}, "RUNDRUF_WORKER_METRICS_PORT"),
    ],
)
def test_it_refuses_bad_worker_settings_with_a_clear_message(overrides, message):
    with pytest.raises(ConfigurationError) as caught:
        load_settings(secret_key=SECRET_KEY, **overrides)
    assert message in caught.value.message


def _worker(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNDRUF, "worker"],
        env=clean_env(
            RUNDRUF_SECRET_KEY=SECRET_KEY,
            RUNDRUF_DATABASE_URL=f"sqlite:///{tmp_path / 'rundruf.db'}",
            RUNDRUF_WORKER_STATE_DIR=str(tmp_path / "state"),
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_worker_stops_with_a_message_not_a_stack_trace(tmp_path: Path):
    result = _worker(tmp_path, RUNDRUF_SMTP_SECURITY="ssl")
    assert result.returncode == 2
    assert "RUNDRUF_SMTP_SECURITY" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()


def test_the_worker_refuses_a_database_that_is_not_migrated(tmp_path: Path):
    result = _worker(tmp_path)
    assert result.returncode == 2
    assert "rundruf db upgrade" in result.stderr
    assert "Traceback" not in result.stderr
