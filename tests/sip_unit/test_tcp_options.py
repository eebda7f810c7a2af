"""TCP's keep-alive options on Windows (tcp_options.py's branch there), run on Linux
with the platform checks patched and a socket that records what it is asked."""

from __future__ import annotations

import socket

import pytest

from edge_agent import platforms
from edge_agent.sip import tcp_options


class WindowsSocket:
    """What the Windows branch calls on a socket, recorded (Windows' own values)."""

    def __init__(self) -> None:
        self.options: list[tuple[int, int, int]] = []
        self.ioctls: list[tuple[int, object]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))

    def ioctl(self, code: int, value: object) -> None:
        self.ioctls.append((code, value))


def test_on_windows_the_keep_alive_timings_go_through_sio_keepalive_vals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(platforms, "on_windows", lambda: True)
    monkeypatch.setattr(platforms, "on_linux", lambda: False)
    monkeypatch.delattr(socket, "SIO_KEEPALIVE_VALS", raising=False)  # as on Linux
    sock = WindowsSocket()
    tcp_options.keep_alive(sock)
    # SIO_KEEPALIVE_VALS (mstcpip.h): on, 15 s idle, 5 s between probes, in ms.
    assert sock.ioctls == [(0x98000004, (1, 15_000, 5_000))]
    assert sock.options == [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, 5, 30),  # TCP_MAXRT (ws2ipdef.h): unacknowledged data, seconds
    ]
