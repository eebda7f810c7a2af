"""The central service's errors: one rooted hierarchy.

Each error carries the code a GraphQL client sees in ``extensions.code``;
graphql-core copies an original error's ``extensions`` onto the GraphQL error.
"""

from __future__ import annotations

from typing import Any


class RundrufError(Exception):
    """Raised for an expected failure that a client may see in plain words."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def extensions(self) -> dict[str, Any]:
        return {"code": self.code, **self.details}


class ConfigurationError(RundrufError):
    """Raised when the settings cannot start the service."""

    code = "CONFIGURATION"


class Unauthenticated(RundrufError):
    """Raised when a request needs a signed-in user and has none."""

    code = "UNAUTHENTICATED"


class Forbidden(RundrufError):
    """Raised when the signed-in user's role does not allow the operation."""

    code = "FORBIDDEN"


class NotFound(RundrufError):
    """Raised when an object does not exist or belongs to another tenant."""

    code = "NOT_FOUND"


class BadInput(RundrufError):
    """Raised when an argument is invalid; ``field`` names it."""

    code = "BAD_USER_INPUT"


class BadRequest(RundrufError):
    """Raised when a request as a whole is refused (too much in it), not one field."""

    code = "BAD_REQUEST"


class Conflict(RundrufError):
    """Raised when the request clashes with the current state (duplicate, revoked…)."""

    code = "CONFLICT"


class TooManyAttempts(RundrufError):
    """Raised when logins are throttled for an account or a client address."""

    code = "TOO_MANY_ATTEMPTS"
