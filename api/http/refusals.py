"""Requests refused before anything runs, in the shape their endpoint speaks.

GraphQL clients read ``{"errors": [{"message", "extensions": {"code"}}]}`` from
/graphql, whatever refused the request (a malformed body, a body over the limit,
another method); the REST endpoints answer ``{"error", "code"}`` as their other
errors do.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

GRAPHQL_PATH = "/graphql"
CODES = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
}


def code_for(status: int) -> str:
    return CODES.get(status, "BAD_REQUEST")


def refusal(
    path: str,
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, object] | None = None,
) -> JSONResponse:
    """``extensions`` (a reason code and its bound) go with the code at /graphql."""
    code = code_for(status)
    if path == GRAPHQL_PATH:
        details = {"code": code, **(extensions or {})}
        body: object = {"errors": [{"message": message, "extensions": details}]}
    else:
        body = {"error": message, "code": code}
    return JSONResponse(body, status_code=status, headers=headers)
