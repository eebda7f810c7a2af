"""The agent's health probe of the job service, against the real job service app."""

from __future__ import annotations

from pathlib import Path

import httpx

from edge_agent.jobservice import JobServiceClient
from swyx_jobservice.app import create_app
from tests.jobservice.support import AGENT, ROUTING, make_settings


def _client(tmp_path: Path, token: str) -> JobServiceClient:
    app = create_app(make_settings(tmp_path))
    return JobServiceClient("http://jobs", token, transport=httpx.ASGITransport(app=app))


async def test_a_running_job_service_is_reported_reachable(tmp_path):
    client = _client(tmp_path, AGENT)
    try:
        assert await client.healthy() is True
    finally:
        await client.aclose()


async def test_a_wrong_token_counts_as_not_reachable(tmp_path):
    client = _client(tmp_path, ROUTING)
    try:
        assert await client.healthy() is False
    finally:
        await client.aclose()


async def test_no_job_service_counts_as_not_reachable():
    # Port 9 on loopback (discard) has no listener here: the connection is refused.
    client = JobServiceClient("http://127.0.0.1:9", AGENT)
    try:
        assert await client.healthy() is False
    finally:
        await client.aclose()
