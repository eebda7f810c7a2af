"""The job service's errors: one rooted hierarchy.

Each error a client can cause carries its HTTP status and, where one field is
to blame, the name of that field as the routing script sent it.
"""

from __future__ import annotations


class JobServiceError(Exception):
    """Raised for an expected failure that is reported in plain words."""

    status = 500

    def __init__(self, message: str, field: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # A stable reason a program can act on (README.md lists them); None when
        # the status says enough.
        self.code = code


class ConfigurationError(JobServiceError):
    """Raised when the settings or the data folder cannot start the service."""


DATA_DIR_NOT_WRITABLE = "dataDirNotWritable"
# A health problem, no error: job files found unusable wait in quarantine/ to be told.
QUARANTINED_JOBS = "quarantinedJobs"
# Health problems: the quarantine folder cannot take a file (the file then stays where
# it is, listed all the same), and job files that may not be read now (held in jobs/,
# tried again): neither stops the service, valid jobs run on.
QUARANTINE_NOT_WRITABLE = "quarantineNotWritable"
JOB_FILES_HELD = "jobFilesHeld"


class StoreError(JobServiceError):
    """Raised when the data folder cannot be read or written."""

    # Unavailable, not a server bug: the routing script may retry or fall back.
    status = 503


class BadRequest(JobServiceError):
    """Raised when a request is malformed or a field has a wrong type or value."""

    status = 400


class Unauthenticated(JobServiceError):
    """Raised when a request carries no token or one that neither party holds."""

    status = 401


class Forbidden(JobServiceError):
    """Raised when a party uses an endpoint that belongs to the other party."""

    status = 403


class NotFound(JobServiceError):
    """Raised when a job, its recording or a route does not exist."""

    status = 404


class MethodNotAllowed(JobServiceError):
    """Raised when a route exists but not for the request's method."""

    status = 405


class KeyConflict(JobServiceError):
    """Raised when an idempotency key comes back with different content."""

    status = 409


class PayloadTooLarge(JobServiceError):
    """Raised when the body or the recording is larger than its limit."""

    status = 413


class UnsupportedMediaType(JobServiceError):
    """Raised when a job is not posted as application/json."""

    status = 415


class QueueFull(JobServiceError):
    """Raised when so many notices are pending that no more are taken."""

    # Unavailable until the agent has fetched and deleted some; the sender may retry.
    status = 503


class JobFileDamaged(JobServiceError):
    """Raised when a job file at start can never make a job (kind, size, bytes)."""


class JobFileBusy(JobServiceError):
    """Raised when a job file may not be read now (rights, a sharing violation)."""
