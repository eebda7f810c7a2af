"""The website's protective headers and compression (issue 14, 7).

Destructive actions are one click away, so no other site may frame the page and
no injected markup may run; the website's own files therefore carry no inline
script, handler or style for the policy to block.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.test_graphql_protections import app_client

WEBSITE = Path(__file__).resolve().parent.parent / "frontend_stub"


def directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    parts = (d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    return {p[0]: p[1] if len(p) > 1 else "" for p in parts}


@pytest.mark.parametrize("path", ["/", "/js/app.js", "/styles.css", "/health", "/nope"])
async def test_every_answer_carries_the_security_headers(client, world, path):
    response = await client.get(path)
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    policy = directives(response)
    assert policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert policy["default-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert "unsafe" not in response.headers["content-security-policy"]


async def test_graphql_answers_carry_them_too(client, world):
    response = await client.post("/graphql", json={"query": "{ __typename }"})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert directives(response)["frame-ancestors"] == "'none'"


async def test_the_graphql_ide_when_switched_on_is_spared_the_policy_only(rt, world):
    async with app_client(rt, graphql_ide=True) as c:
        ide = await c.get("/graphql", headers={"Accept": "text/html"})
        page = await c.get("/")
    assert ide.status_code == 200 and "<script" in ide.text
    assert "content-security-policy" not in ide.headers
    assert ide.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" in page.headers


@pytest.mark.parametrize("path", ["/js/app.js", "/styles.css", "/js/texts/de.js"])
async def test_static_files_are_sent_compressed(client, world, path):
    raw = await client.get(path, headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in raw.headers["vary"].lower()
    assert raw.content == (WEBSITE / path.lstrip("/")).read_bytes()  # httpx decoded it
    assert int(raw.headers["content-length"]) < len(raw.content)
    plain = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == raw.content


async def test_the_compressed_file_has_a_weak_etag_and_still_revalidates(client, world):
    """Two encodings are two representations: one strong ETag for both would let a
    cache serve gzip bytes to a client that asked for none (RFC 9110, 8.8.3)."""
    raw = await client.get("/js/app.js", headers={"Accept-Encoding": "gzip"})
    plain = await client.get("/js/app.js", headers={"Accept-Encoding": "identity"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["etag"] != plain.headers["etag"]
    assert raw.headers["etag"] == "W/" + plain.headers["etag"]
    again = await client.get(
        "/js/app.js",
        headers={"Accept-Encoding": "gzip", "If-None-Match": raw.headers["etag"]},
    )
    assert again.status_code == 304


async def test_graphql_answers_over_1_kib_are_sent_compressed(client, world):
    query = "{ __schema { types { name description } } }"
    small = await client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"Accept-Encoding": "gzip"}
    )
    assert "content-encoding" not in small.headers
    big = await client.post("/graphql", json={"query": query}, headers={"Accept-Encoding": "gzip"})
    assert big.status_code == 200
    assert big.headers["content-encoding"] == "gzip"
    assert big.json()["data"]["__schema"]["types"]
    assert int(big.headers["content-length"]) < len(big.content)


class _InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        self.found += [f"{name}= on <{tag}>" for name in names if name.startswith("on")]
        if "style" in names:
            self.found.append(f"style= on <{tag}>")


def test_the_pages_have_no_inline_script_handler_or_style():
    for page in WEBSITE.rglob("*.html"):
        finder = _InlineFinder()
        finder.feed(page.read_text())
        assert not finder.found, (page.name, finder.found)


def test_the_scripts_write_no_markup_the_policy_would_block():
    blocked = re.compile(
        r"""innerHTML|outerHTML|insertAdjacentHTML|\bon[a-z]+=["']|style=["']|eval\(|new Function"""
    )
    offenders = [
        f"{js.relative_to(WEBSITE)}:{n}"
        for js in WEBSITE.rglob("*.js")
        for n, line in enumerate(js.read_text().splitlines(), 1)
        if blocked.search(line)
    ]
    assert not offenders
