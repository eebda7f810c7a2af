"""Errors of the agent outside the PBX adapters (those are in pbx/errors.py)."""

from __future__ import annotations


class AgentError(Exception):
    """Raised for an agent failure that is reported in plain words."""


class ConfigurationError(AgentError):
    """Raised when a setting is missing or invalid; the command starts nothing."""


class NotEnrolled(AgentError):
    """Raised when the agent has no configuration file with a server and token."""


class ServerRefused(AgentError):
    """Raised when the central service refuses the agent (revoked token, bad request).

    `public`: the refusal in words a user may read (no address, no raw answer); the
    message itself is for the agent's log.
    """

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public if public is not None else message


class ServerUnreachable(AgentError):
    """Raised when the central service cannot be reached; the agent retries."""
