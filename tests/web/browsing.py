"""What the website tests share: the browser's settings, the stack they run against, and
helpers that act as a person would (open a page, sign in, follow the navigation)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import REQUIRE
from tests.processes import Server

CHROMIUM = Path(os.environ.get("RUNDRUF_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PLATFORM_EMAIL = "ops@web.example"
PLATFORM_PASSWORD = "web platform password 1"
# Playwright's own waits (expect, locators): long enough for the agent's round trips.
TIMEOUT_MS = 30_000
PHONE_WIDTH = 375


def need_chromium() -> None:
    if not CHROMIUM.exists():
        message = f"chromium is required for the website tests but missing at {CHROMIUM}"
        if REQUIRE:
            pytest.fail(message + " (ops/ensure-services.sh installs it)")
        pytest.skip(message)


@dataclass
class WebStack:
    """`rundruf serve`, `rundruf worker` and `rundruf scheduler` on a database and a Redis
    namespace of their own."""

    env: dict[str, str]
    server: Server
    background: list[subprocess.Popen[bytes]]  # worker and scheduler
    logs: Path

    @property
    def url(self) -> str:
        return self.server.url


# Uncaught script errors and console errors per page: every test ends without any.
SCRIPT_ERRORS: dict[Page, list[str]] = {}


def open_page(browser: Browser, base_url: str, width: int = 1280) -> Page:
    context = browser.new_context(
        base_url=base_url, viewport={"width": width, "height": 900}, locale="de-DE"
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = SCRIPT_ERRORS.setdefault(page, [])
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    page.goto("/")
    return page


def forgive(page: Page, text: str) -> None:
    """Drops the errors so far that contain `text`: ones the test itself caused."""
    errors = SCRIPT_ERRORS.get(page, [])
    errors[:] = [e for e in errors if text not in e]


def sign_in(page: Page, email: str, password: str) -> None:
    page.get_by_label("E-Mail-Adresse").fill(email)
    page.get_by_label("Passwort").fill(password)
    page.get_by_role("button", name="Anmelden").click()


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)


def shot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def assert_fits(page: Page) -> None:
    width: Any = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH, f"the page is {width} px wide on a {PHONE_WIDTH} px screen"
