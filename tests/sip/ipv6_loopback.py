"""The IPv6 loopback (::1) and a mark that skips a test on a host without it."""

from __future__ import annotations

import socket

import pytest

LOOPBACK6 = "::1"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK6, 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) here")
