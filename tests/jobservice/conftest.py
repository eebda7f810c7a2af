"""Fixtures: a job service app over a fresh data folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.jobservice.support import Service, make_settings


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    svc = Service.start(make_settings(tmp_path))
    yield svc
    await svc.close()
