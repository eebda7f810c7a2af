"""The SIP socket's buffers: Linux's FORCE options only on Linux. Their numbers mean other
options elsewhere (on Windows SOL_SOCKET 32 is SO_BROADCAST, which would succeed: the
send buffer never enlarged and broadcast turned on)."""

from __future__ import annotations

import socket

import pytest

from edge_agent import platforms
from edge_agent.sip import transport

SOL, BIG = socket.SOL_SOCKET, transport.BUFFER_BYTES
FORCE_RCV, FORCE_SND = 33, 32  # Linux's SO_RCVBUFFORCE, SO_SNDBUFFORCE


class RecordingSocket:
    """Records each setsockopt; refuses the options in `refused` as Linux refuses the
    FORCE ones without CAP_NET_ADMIN."""

    def __init__(self, refused: tuple[int, ...] = ()) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.refused = refused

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.calls.append((level, option, value))
        if option in self.refused:
            raise PermissionError(1, "Operation not permitted")


def on(monkeypatch: pytest.MonkeyPatch, system: str) -> None:
    monkeypatch.setattr(platforms, "on_linux", lambda: system == "linux")
    monkeypatch.setattr(platforms, "on_windows", lambda: system == "windows")


@pytest.mark.parametrize("system", ["windows", "darwin"])
def test_it_sets_only_the_plain_buffer_options_off_linux(
    monkeypatch: pytest.MonkeyPatch, system: str
) -> None:
    on(monkeypatch, system)
    sock = RecordingSocket()

    transport._enlarge_buffers(sock)  # type: ignore[arg-type]

    assert sock.calls == [(SOL, socket.SO_RCVBUF, BIG), (SOL, socket.SO_SNDBUF, BIG)]


def test_it_forces_the_buffers_on_linux_where_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    on(monkeypatch, "linux")
    sock = RecordingSocket()

    transport._enlarge_buffers(sock)  # type: ignore[arg-type]

    assert sock.calls == [(SOL, FORCE_RCV, BIG), (SOL, FORCE_SND, BIG)]


def test_it_falls_back_to_the_plain_options_on_linux_without_the_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on(monkeypatch, "linux")
    sock = RecordingSocket(refused=(FORCE_RCV, FORCE_SND))

    transport._enlarge_buffers(sock)  # type: ignore[arg-type]

    assert sock.calls == [
        (SOL, FORCE_RCV, BIG),
        (SOL, socket.SO_RCVBUF, BIG),
        (SOL, FORCE_SND, BIG),
        (SOL, socket.SO_SNDBUF, BIG),
    ]
