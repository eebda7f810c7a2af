"""GET /metrics: Prometheus text from the database, only with the metrics token."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update

from api.app import create_app
from api.metrics import Metric, render
from api.models import (
    Broadcast,
    BroadcastStatus,
    Command,
    CommandStatus,
    Email,
    EmailStatus,
    Installation,
)
from api.runtime import Runtime
from api.services.watchdog import sweep
from api.settings import load_settings

TOKEN = "metrics-secret-0123456789"


@pytest.fixture
async def scraper(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    with_token = dataclasses.replace(
        rt, settings=rt.settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})
    )
    transport = httpx.ASGITransport(app=create_app(with_token), client=("203.0.113.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


def _values(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_without_a_token_setting_there_are_no_metrics(client):
    response = await client.get("/metrics")
    assert response.status_code == 404


async def test_an_empty_token_setting_turns_metrics_off_instead_of_opening_them(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RUNDRUF_METRICS_TOKEN", "")
    settings = load_settings(**rt.settings.model_dump(exclude={"metrics_token"}))
    transport = httpx.ASGITransport(app=create_app(dataclasses.replace(rt, settings=settings)))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        response = await c.get("/metrics")
    assert response.status_code == 404
    assert "rundruf_" not in response.text


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer "])
async def test_it_refuses_a_scraper_without_the_token(scraper, world, header):
    headers = {"Authorization": header} if header else {}
    response = await scraper.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert "rundruf_" not in response.text


async def test_it_shows_incidents_agents_broadcasts_and_the_outbox(scraper, rt, world, clock):
    async with rt.db.transaction() as s:
        await s.execute(
            update(Installation)
            .where(Installation.id == world.a.installation_id)
            .values(pbx_reachable=False)
        )
        await s.execute(
            update(Broadcast)
            .where(Broadcast.id == world.a.broadcast_id)
            .values(status=BroadcastStatus.RUNNING)
        )
        await s.execute(
            update(Command)
            .where(Command.id == world.a.command_id)
            .values(status=CommandStatus.DELIVERED)
        )
    result = await sweep(rt)  # one incident, mailed to tenant A's contact and admin
    async with rt.db.transaction() as s:
        await s.execute(
            update(Email).where(Email.id == result.mail_ids[0]).values(status=EmailStatus.SENT)
        )
    clock.advance(seconds=1)

    response = await scraper.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE rundruf_incidents_open gauge" in response.text
    values = _values(response.text)
    assert values['rundruf_incidents_open{kind="pbx_unreachable"}'] == 1
    assert values['rundruf_incidents_open{kind="heartbeat_missed"}'] == 0
    assert values["rundruf_installations"] == 2
    assert values["rundruf_agents_connected"] == 2
    assert values["rundruf_broadcasts_running"] == 1
    assert values['rundruf_mails{status="queued"}'] == 1
    assert values['rundruf_mails{status="sent"}'] == 1
    assert values['rundruf_mails{status="failed"}'] == 0
    assert values["rundruf_mails_due"] == 1
    async with rt.db.reading() as s:
        open_commands = await s.scalar(
            select(func.count())
            .select_from(Command)
            .where(Command.status.in_([CommandStatus.PENDING, CommandStatus.DELIVERED]))
        )
    assert open_commands and values["rundruf_commands_open"] == open_commands

    # A silent agent no longer counts as connected once the watchdog calls it overdue.
    clock.advance(seconds=181)
    later = _values(
        (await scraper.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
    )
    assert later["rundruf_agents_connected"] == 0


def test_the_renderer_writes_the_text_format():
    text = render(
        [
            Metric("x_total", "Things.\nMore.", [({"b": 'a"b\\c\nd', "a": "1"}, 2.5)], "counter"),
            Metric("y", "Plain.", [({}, 3.0)]),
        ]
    )
    assert text == (
        "# HELP x_total Things.\\nMore.\n"
        "# TYPE x_total counter\n"
        'x_total{a="1",b="a\\"b\\\\c\\nd"} 2.5\n'
        "# HELP y Plain.\n"
        "# TYPE y gauge\n"
        "y 3\n"
    )
