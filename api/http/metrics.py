"""``GET /metrics`` for Prometheus, on the API and (the same endpoint) on workers.

Access: only with the bearer token in ``RUNDRUF_METRICS_TOKEN`` (Prometheus's
``authorization`` / ``bearer_token_file``); without that setting the endpoint
answers 404. Binding to loopback alone would not do: the TLS proxy in front of
the API is itself a loopback client and forwards every path, so the counts of
customers, incidents and mails would be public. A token works the same behind
any proxy and for a scraper elsewhere.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from api.metrics import CONTENT_TYPE, Metric, exposition
from api.runtime import Runtime

Extra = Callable[[], Awaitable[Iterable[Metric]]]


def _authorized(rt: Runtime, request: Request) -> bool:
    token = rt.settings.metrics_token
    assert token is not None
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    return hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def endpoint(rt: Runtime, extra: Extra | None = None) -> Callable[[Request], Awaitable[Any]]:
    """The Starlette endpoint; ``extra`` adds a process's own metrics (a worker's queue)."""

    async def metrics(request: Request) -> Response:
        if rt.settings.metrics_token is None:
            return PlainTextResponse("Not Found", status_code=404)
        if not _authorized(rt, request):
            return PlainTextResponse(
                "send the metrics token as a bearer token",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        more = await extra() if extra is not None else ()
        return Response(await exposition(rt, more), media_type=CONTENT_TYPE)

    return metrics
