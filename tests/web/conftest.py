"""Browser tests of the website: Debian's chromium, headless, driven by Playwright.

No browser is ever downloaded (`playwright install` is not used): Playwright
starts /usr/bin/chromium, which `make test` installs (ops/ensure-services.sh).
Without it the tests skip on a developer machine and fail when
RUNDRUF_REQUIRE_SERVICES=1, like the other services.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE

CHROMIUM = Path(os.environ.get("RUNDRUF_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# Playwright's own waits (expect, locators): long enough for the agent's round trips.
TIMEOUT_MS = 30_000


def need_chromium() -> None:
    if not CHROMIUM.exists():
        message = f"chromium is required for the website tests but missing at {CHROMIUM}"
        if REQUIRE:
            pytest.fail(message + " (ops/ensure-services.sh installs it)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
