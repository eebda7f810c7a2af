"""The scheduler's lease: of any number of schedulers started, only the holder sends.

With Redis: ``SET key token NX PX ttl`` takes it; the holder renews it every
tick with a script that extends it only while the value is still its own token,
so a scheduler that stalled past the TTL cannot renew another's lease. A
holder that stops (or dies) is replaced within one TTL.

Without Redis (the embedded default, one host): an exclusive ``flock`` on a
file; the kernel drops it when the process dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path
from typing import Protocol

import redis

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    holder: str

    def hold(self) -> bool:
        """Takes or renews the lease; True while this process holds it."""
        ...

    def release(self) -> None: ...


class RedisLease:
    def __init__(self, client: redis.Redis, key: str, ttl_seconds: float) -> None:
        self.holder = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client = client
        self._key = key
        self._ttl_ms = int(ttl_seconds * 1000)
        self._held = False
        self._unreachable = False

    def hold(self) -> bool:
        try:
            if self._held:
                self._held = bool(
                    self._client.eval(_RENEW, 1, self._key, self.holder, self._ttl_ms)
                )
            else:
                self._held = bool(
                    self._client.set(self._key, self.holder, nx=True, px=self._ttl_ms)
                )
        except redis.RedisError as exc:
            # Nothing can be sent without Redis anyway; try again next tick (said once).
            if not self._unreachable:
                log.warning("scheduler lease: Redis unreachable: %s", exc)
                self._unreachable = True
            return False
        if self._unreachable:
            log.info("scheduler lease: Redis reachable again")
            self._unreachable = False
        return self._held

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            self._client.eval(_RELEASE, 1, self._key, self.holder)
        except redis.RedisError as exc:
            log.warning("scheduler lease not released (it expires by itself): %s", exc)


class FileLease:
    def __init__(self, path: Path) -> None:
        self.holder = f"{os.uname().nodename}:{os.getpid()}"
        self._path = path
        self._fd: int | None = None

    def hold(self) -> bool:
        if self._fd is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock
