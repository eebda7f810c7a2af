"""In a real browser: no other site may frame the website, and the website runs
under its Content Security Policy without a single refusal (issue 14, 7)."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.web.browsing import PLATFORM_EMAIL, PLATFORM_PASSWORD, WebStack, nav, open_page, sign_in


def test_another_site_cannot_frame_the_website(browser: Browser, stack: WebStack) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        refusals: list[str] = []
        page.on("console", lambda m: m.type == "error" and refusals.append(m.text))
        # A page of another origin (about:blank with our markup) frames the site.
        page.set_content(f'<iframe id="victim" src="{stack.url}/"></iframe>')
        page.wait_for_timeout(1500)
        framed = page.frame_locator("#victim")
        expect(framed.locator("#main")).to_have_count(0)
        assert any("frame-ancestors" in text for text in refusals), refusals
    finally:
        context.close()


def test_the_signed_in_website_runs_under_the_policy(browser: Browser, stack: WebStack) -> None:
    """Every page a platform admin opens, live socket included; the autouse check
    of tests/web fails on any console error, and CSP refusals are console errors."""
    page = open_page(browser, stack.url)
    sign_in(page, PLATFORM_EMAIL, PLATFORM_PASSWORD)
    for name in ("Mandanten", "Lizenzen", "Benutzer", "Überwachung"):
        nav(page, name)
        expect(page.locator("#main")).not_to_be_empty()
    page.context.close()
