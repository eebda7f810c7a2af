"""Wires the central service together; the only place that builds a Runtime."""

from __future__ import annotations

import logging

from api.db import Database, create_engine
from api.pubsub import make_hub
from api.runtime import Runtime
from api.security import SecretBox
from api.settings import Settings
from api.tasks import make_tasks


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per outgoing request is noise, not news.
    logging.getLogger("httpx").setLevel(
        max(logging.WARNING, logging.getLevelName(settings.log_level))
    )


def bootstrap(settings: Settings) -> Runtime:
    configure_logging(settings)
    return Runtime(
        settings=settings,
        db=Database(create_engine(settings)),
        box=SecretBox(settings.fernet_key),
        hub=make_hub(settings.redis_url),
        tasks=make_tasks(settings),
    )
