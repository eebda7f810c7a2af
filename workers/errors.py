"""Errors of the background workers, one hierarchy rooted at ``WorkerError``."""

from __future__ import annotations


class WorkerError(Exception):
    """Raised when background work cannot be done; the root of this package's errors."""


class DeliveryError(WorkerError):
    """Raised when the SMTP server did not take a mail; ``permanent`` says whether to try again.

    ``server_down``: the server was not reached or not usable at all (not an
    answer about this one mail), so other mails would fail the same way now.
    """

    def __init__(self, reason: str, *, permanent: bool, server_down: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.server_down = server_down
