"""Settings: read once, bad ones end the start with a clear message and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import main
from swyx_jobservice.errors import ConfigurationError
from swyx_jobservice.settings import load_settings
from tests.jobservice.support import AGENT, ROUTING


def test_it_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNDRUF_JOBSERVICE_AGENT_TOKEN", AGENT)
    monkeypatch.setenv("RUNDRUF_JOBSERVICE_ROUTING_TOKEN", ROUTING)
    monkeypatch.setenv("RUNDRUF_JOBSERVICE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RUNDRUF_JOBSERVICE_MAX_RECORDING_SECONDS", "30")
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_dir == tmp_path and settings.max_recording_seconds == 30
    assert settings.max_body_bytes == 12 * 1024 * 1024
    assert AGENT not in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "RUNDRUF_JOBSERVICE_AGENT_TOKEN: Field required"),
        ({"agent_token": "short", "routing_token": ROUTING}, "at least 16 characters"),
        ({"agent_token": AGENT, "routing_token": AGENT}, "must differ"),
        ({"agent_token": AGENT + " x", "routing_token": ROUTING}, "printable ASCII"),
        ({"agent_token": AGENT, "routing_token": ROUTING, "port": 0}, "PORT"),
    ],
)
def test_it_names_bad_settings_without_their_values(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(**overrides)
    assert message in info.value.message
    assert "short" not in info.value.message


def test_the_command_exits_2_on_bad_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNDRUF_JOBSERVICE_AGENT_TOKEN", "too-short")
    assert main(["jobservice"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rundruf jobservice: bad settings: ")
    assert "too-short" not in err


def test_the_command_exits_2_on_an_unusable_data_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("RUNDRUF_JOBSERVICE_AGENT_TOKEN", AGENT)
    monkeypatch.setenv("RUNDRUF_JOBSERVICE_ROUTING_TOKEN", ROUTING)
    monkeypatch.setenv("RUNDRUF_JOBSERVICE_DATA_DIR", str(tmp_path / "file" / "data"))
    assert main(["jobservice"]) == 2
    assert "is not usable" in capsys.readouterr().err
