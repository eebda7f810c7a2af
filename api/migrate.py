"""Schema migrations through Alembic, on the configured database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from api.settings import Settings

_HERE = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config(str(_HERE / "alembic.ini"))
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings.sync_database_url), revision)


def require_head(settings: Settings) -> None:
    """Refuses to serve a database whose schema is behind (or ahead of) this code."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from api.errors import ConfigurationError

    head = ScriptDirectory.from_config(
        alembic_config(settings.sync_database_url)
    ).get_current_head()
    engine = create_engine(settings.sync_database_url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise ConfigurationError(f"cannot reach the database: {exc.orig}") from None
    finally:
        engine.dispose()
    if current != head:
        raise ConfigurationError(
            f"the database schema is at {current or 'nothing'}, this code needs {head}: "
            "run `rundruf db upgrade`"
        )
