"""Migrations build exactly the schema the models describe, on both backends."""

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

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
