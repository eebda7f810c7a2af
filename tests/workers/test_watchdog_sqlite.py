"""The embedded default: the sweep and the metrics on SQLite (no PostgreSQL needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlalchemy import func, select

from api.bootstrap import bootstrap
from api.metrics import collect
from api.migrate import upgrade
from api.models import Email
from api.services.watchdog import sweep
from api.settings import load_settings
from tests.conftest import SECRET_KEY, Clock
from tests.world import build_world


async def test_the_sweep_opens_and_closes_once_on_sqlite(tmp_path: Path):
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'embedded.db'}", secret_key=SECRET_KEY
    )
    upgrade(settings)
    clock = Clock()
    rt = dataclasses.replace(bootstrap(settings), clock=clock)
    try:
        await build_world(rt)
        clock.advance(seconds=181)
        first = await sweep(rt)
        assert len(first.opened) == 2 and first.failed == 0
        assert (await sweep(rt)).opened == []
        metrics = {m.name: m for m in await collect(rt)}
        assert ({"kind": "heartbeat_missed"}, 2) in metrics["rundruf_incidents_open"].samples
        async with rt.db.reading() as s:
            assert await s.scalar(select(func.count()).select_from(Email)) == 4
    finally:
        await rt.db.dispose()
