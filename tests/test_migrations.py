"""Migrations build exactly the schema the models describe, on both backends."""

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import api.models  # noqa: F401
from api.migrate import alembic_config
from api.models.base import Base
from tests.conftest import drop_database, fresh_database, need_postgres


def _differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_an_empty_postgresql_database_migrates_to_the_models():
    need_postgres()
    url = fresh_database("migrations")
    try:
        command.upgrade(alembic_config(url), "head")
        assert _differences(url) == []
        # Down and up again: every migration can be undone.
        command.downgrade(alembic_config(url), "base")
        command.upgrade(alembic_config(url), "head")
        assert _differences(url) == []
    finally:
        drop_database(url)


def test_sqlite_migrates_to_the_models(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    command.upgrade(alembic_config(url), "head")
    assert _differences(url) == []


def _checks(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        found = {}
        for table in ("installation", "watchdog_incident"):
            for check in inspect(engine).get_check_constraints(table):
                found[str(check["name"])] = str(check["sqltext"])
        return found
    finally:
        engine.dispose()


def _assert_issue_13_checks(url: str) -> None:
    """compare_metadata skips CHECKs: the enums' value lists are compared here."""
    checks = _checks(url)
    assert "sip_registration_failed" in checks["ck_watchdog_incident_incident_kind"]
    for name, values in (
        ("ck_installation_pbx_adapter", ["sim", "swyx"]),
        ("ck_installation_dialer_kind", ["sim", "sip"]),
        ("ck_installation_sip_registration_state", ["registered", "failed", "disabled"]),
    ):
        assert all(f"'{v}'" in checks[name] for v in values), checks[name]


def test_the_installations_health_checks_exist_on_both_backends(tmp_path: Path):
    sqlite = f"sqlite:///{tmp_path / 'embedded.db'}"
    command.upgrade(alembic_config(sqlite), "head")
    _assert_issue_13_checks(sqlite)
    command.downgrade(alembic_config(sqlite), "0003")
    assert "sip_registration_failed" not in _checks(sqlite)["ck_watchdog_incident_incident_kind"]
    need_postgres()
    url = fresh_database("migrations_checks")
    try:
        command.upgrade(alembic_config(url), "head")
        _assert_issue_13_checks(url)
    finally:
        drop_database(url)


def _attempt_checks(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        return {
            str(c["name"]): str(c["sqltext"])
            for c in inspect(engine).get_check_constraints("call_attempt")
        }
    finally:
        engine.dispose()


def _assert_late_attempt_checks(url: str) -> None:
    checks = _attempt_checks(url)
    assert "'not_called'" in checks["ck_call_attempt_call_outcome"]
    assert "'skipped_busy'" in checks["ck_call_attempt_call_outcome"]
    for reason in ("agent_down", "command_late", "deadline_passed"):
        assert f"'{reason}'" in checks["ck_call_attempt_late_reason"]


def test_late_attempts_and_members_not_called_are_allowed_on_both_backends(tmp_path: Path):
    sqlite = f"sqlite:///{tmp_path / 'embedded.db'}"
    command.upgrade(alembic_config(sqlite), "head")
    _assert_late_attempt_checks(sqlite)
    command.downgrade(alembic_config(sqlite), "0004_installation_sip")
    assert "'not_called'" not in _attempt_checks(sqlite)["ck_call_attempt_call_outcome"]
    need_postgres()
    url = fresh_database("migrations_late")
    try:
        command.upgrade(alembic_config(url), "head")
        _assert_late_attempt_checks(url)
    finally:
        drop_database(url)
