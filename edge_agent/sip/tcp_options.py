"""TCP's own keep-alive on the connections the agent opens (to the PBX), so that one the
PBX forgot (a reboot, a cut cable) is noticed and closed, not written to for minutes.

The CRLF keep-alive of RFC 5626 (`SipStream.ping`, every 15 s) catches a PBX that
answers pings; for one that does not, the kernel probes an idle connection
(SO_KEEPALIVE) and gives up on data nobody acknowledges (Linux TCP_USER_TIMEOUT,
Windows TCP_MAXRT), each after about 30 s. Linux takes the timings per socket
(TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT); Windows through the SIO_KEEPALIVE_VALS
ioctl (idle and interval in ms; the count is Windows' own, 10). An option the system
refuses is logged and left: the connection works without it.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from edge_agent import platforms

log = logging.getLogger(__name__)

IDLE_S = 15  # quiet this long before the first probe
INTERVAL_S = 5  # between probes
PROBES = 3  # unanswered probes before the connection is given up (POSIX)
GIVE_UP_S = IDLE_S + INTERVAL_S * PROBES  # data unacknowledged this long: gone too
# Windows' values (mstcpip.h, ws2ipdef.h) where Python lacks the names.
WINDOWS_SIO_KEEPALIVE_VALS = 0x98000004
WINDOWS_TCP_MAXRT = 5  # seconds
LINUX_TCP_USER_TIMEOUT = 18  # milliseconds


def keep_alive(sock: Any) -> None:
    """Switches TCP's keep-alive on for `sock` (a socket, before or after connecting)
    with the timings above."""
    _set(sock, socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if platforms.on_windows():
        ioctl = getattr(sock, "ioctl", None)
        code = getattr(socket, "SIO_KEEPALIVE_VALS", WINDOWS_SIO_KEEPALIVE_VALS)
        try:
            if ioctl is None:
                raise OSError("this socket has no ioctl")
            ioctl(code, (1, IDLE_S * 1000, INTERVAL_S * 1000))
        except OSError as exc:
            log.warning("TCP keep-alive timings cannot be set: %r", exc)
        _set(sock, socket.IPPROTO_TCP, WINDOWS_TCP_MAXRT, GIVE_UP_S)
        return
    for name, value in (("TCP_KEEPIDLE", IDLE_S), ("TCP_KEEPINTVL", INTERVAL_S)):
        option = getattr(socket, name, None)  # macOS before 10.15 has neither
        if option is not None:
            _set(sock, socket.IPPROTO_TCP, option, value)
    count = getattr(socket, "TCP_KEEPCNT", None)
    if count is not None:
        _set(sock, socket.IPPROTO_TCP, count, PROBES)
    if platforms.on_linux():
        user_timeout = getattr(socket, "TCP_USER_TIMEOUT", LINUX_TCP_USER_TIMEOUT)
        _set(sock, socket.IPPROTO_TCP, user_timeout, GIVE_UP_S * 1000)


def _set(sock: Any, level: int, option: int, value: int) -> None:
    try:
        sock.setsockopt(level, option, value)
    except OSError as exc:
        log.warning("TCP option %d/%d cannot be set: %r", level, option, exc)
