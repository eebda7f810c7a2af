"""Errors of the PBX adapters. Each says whether trying again can help."""

from __future__ import annotations


class PbxError(Exception):
    """Raised when the PBX did not do what was asked; ``permanent`` if retrying cannot help."""

    permanent = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PbxUnreachable(PbxError):
    """Raised when the PBX cannot be reached or does not answer in time."""

    permanent = False


class PbxLoginRefused(PbxError):
    """Raised when the PBX refuses the administrator's credentials."""


class PbxNotLoggedIn(PbxError):
    """Raised when an operation needs a login that has not happened (or has expired)."""

    permanent = False


class PbxNotFound(PbxError):
    """Raised when a user or group named by id does not exist on the PBX."""


class PbxConflict(PbxError):
    """Raised when the PBX refuses a duplicate (internal number, user or group name)."""


class PbxRefused(PbxError):
    """Raised when the PBX refuses an operation for another reason it states."""
