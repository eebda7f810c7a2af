"""Errors of the agent outside the PBX adapters (those are in pbx/errors.py)."""

from __future__ import annotations

from collections.abc import Mapping


class AgentError(Exception):
    """Raised for an agent failure that is reported in plain words."""


class ConfigurationError(AgentError):
    """Raised when a setting is missing or invalid; the command starts nothing."""


class NotEnrolled(AgentError):
    """Raised when the agent has no configuration file with a server and token."""


class ServerRefused(AgentError):
    """Raised when the central service refuses the agent (revoked token, bad request).

    `public`: the refusal in words a user may read (no address, no raw answer); the
    message itself is for the agent's log. A GraphQL refusal also carries the service's
    own: `code` and `extensions` (machine-readable, as sent) and `answer` (its message).
    """

    def __init__(
        self,
        message: str,
        public: str | None = None,
        code: str = "",
        extensions: Mapping[str, object] | None = None,
        answer: str = "",
    ) -> None:
        super().__init__(message)
        self.public = public if public is not None else message
        self.code = code
        self.extensions: Mapping[str, object] = extensions or {}
        self.answer = answer


class ServerUnreachable(AgentError):
    """Raised when the central service cannot be reached; the agent retries."""
