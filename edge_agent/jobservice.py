"""The agent's side of the job service on the PBX host (port 80 there, 8080 here)."""

from __future__ import annotations

import logging

import httpx

log = logging.getLogger(__name__)


class JobServiceClient:
    def __init__(
        self, url: str, token: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(
            timeout=5, headers={"Authorization": f"Bearer {token}"}, transport=transport
        )

    async def healthy(self) -> bool:
        """Whether the job service answers, accepts our token and can write its folder."""
        try:
            response = await self._client.get(self.url + "/health")
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("job service health check failed: %r", exc)
            return False
        return body.get("status") == "ok" and body.get("dataDir") is True

    async def aclose(self) -> None:
        await self._client.aclose()
