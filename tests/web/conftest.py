"""Browser tests of the website: Debian's chromium, headless, driven by Playwright.

No browser is ever downloaded (`playwright install` is not used): Playwright
starts /usr/bin/chromium, which `make test` installs (ops/ensure-services.sh).
Without it the tests skip on a developer machine and fail when
RUNDRUF_REQUIRE_SERVICES=1, like the other services.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from playwright.sync_api import Browser, expect, sync_playwright

from tests.conftest import drop_database, fresh_database, need_postgres
from tests.processes import RUNDRUF, Server, clean_env, free_port
from tests.test_agent_e2e import REDIS_URL
from tests.web.browsing import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PLATFORM_EMAIL,
    PLATFORM_PASSWORD,
    SCRIPT_ERRORS,
    TIMEOUT_MS,
    WebStack,
    need_chromium,
)


# Package scope, not session: while sync_playwright runs, this thread counts as running an
# event loop, and every later asyncio.run (the worker tests use it) would be refused.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    need_chromium()
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


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    need_postgres()
    need_chromium()
    url = fresh_database(f"web{os.getpid()}")  # one for all website tests
    logs = tmp_path_factory.mktemp("logs")
    env = clean_env(
        RUNDRUF_DATABASE_URL=url,
        RUNDRUF_SECRET_KEY=Fernet.generate_key().decode(),
        RUNDRUF_REDIS_URL=REDIS_URL,
        # Text-to-speech messages go to this module's worker only.
        RUNDRUF_WORKER_NAMESPACE=f"rundruf-web-{uuid.uuid4().hex[:8]}",
        RUNDRUF_WORKER_STATE_DIR=str(logs / "worker-state"),
        RUNDRUF_SMTP_PORT=str(free_port()),  # nothing listens: mails stay queued
        RUNDRUF_COOKIE_SECURE="false",
        # The watchdog looks every second, so the monitoring page shows incidents soon.
        RUNDRUF_WATCHDOG_SWEEP_SECONDS="1",
    )
    subprocess.run([*RUNDRUF, "db", "upgrade"], env=env, check=True, timeout=120)
    admin = ["admin", "create-platform-admin", "--email", PLATFORM_EMAIL]
    subprocess.run(
        [*RUNDRUF, *admin, "--password", PLATFORM_PASSWORD],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    server = Server(env).start(logs)
    background = []
    for command in ("worker", "scheduler"):  # text-to-speech; the watchdog's sweeps
        with (logs / f"{command}.log").open("ab") as out:
            background.append(
                subprocess.Popen([*RUNDRUF, command], env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    try:
        yield WebStack(env, server, background, logs)
    finally:
        for process in background:
            process.terminate()
        for process in background:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        server.stop()
        drop_database(url)


@pytest.fixture(autouse=True)
def _no_script_errors() -> Iterator[None]:
    """Every test ends without an uncaught script error on any page it opened."""
    SCRIPT_ERRORS.clear()
    yield
    found = {page.url: errors for page, errors in SCRIPT_ERRORS.items() if errors}
    SCRIPT_ERRORS.clear()
    assert not found, f"uncaught script errors: {found}"
