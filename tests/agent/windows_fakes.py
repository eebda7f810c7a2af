"""Stand-ins for the Windows-only modules, to run the Windows branches on Linux.

Only what does not exist here is faked (pywin32, msvcrt, winmm); each records the
calls it gets, with Windows' own constant values, so a test can assert what the
branch would have asked Windows to do. What Windows then does with it only a
Windows machine can show (ops/windows/README.md).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

# Values from the Windows SDK (winnt.h, accctrl.h), as pywin32 exposes them.
TOKEN_QUERY = 0x0008
OBJECT_INHERIT_ACE = 0x1
CONTAINER_INHERIT_ACE = 0x2
FILE_ALL_ACCESS = 0x1F01FF
DACL_SECURITY_INFORMATION = 0x4
PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
SE_FILE_OBJECT = 1
ACL_REVISION = 2


@dataclass
class FakeAcl:
    aces: list[tuple[int, int, int, str]] = field(default_factory=list)

    def AddAccessAllowedAceEx(self, revision: int, flags: int, mask: int, sid: str) -> None:
        self.aces.append((revision, flags, mask, sid))


@dataclass
class FakePywin32:
    """win32api, win32security and ntsecuritycon; `protected` holds each
    SetNamedSecurityInfo call as (path, object type, information, dacl)."""

    account: str = "S-1-5-21-1-2-3-1001"
    protected: list[tuple[str, int, int, FakeAcl]] = field(default_factory=list)

    def modules(self) -> tuple[Any, Any, Any]:
        win32api = SimpleNamespace(GetCurrentProcess=lambda: "process")
        win32security = SimpleNamespace(
            TokenUser=1,
            WinLocalSystemSid=22,
            WinBuiltinAdministratorsSid=26,
            ACL_REVISION=ACL_REVISION,
            SE_FILE_OBJECT=SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION=DACL_SECURITY_INFORMATION,
            PROTECTED_DACL_SECURITY_INFORMATION=PROTECTED_DACL_SECURITY_INFORMATION,
            OpenProcessToken=self._open_token,
            GetTokenInformation=self._token_information,
            CreateWellKnownSid=lambda kind, domain: {22: "S-1-5-18", 26: "S-1-5-32-544"}[kind],
            ACL=FakeAcl,
            SetNamedSecurityInfo=self._set,
        )
        ntsecuritycon = SimpleNamespace(
            TOKEN_QUERY=TOKEN_QUERY,
            OBJECT_INHERIT_ACE=OBJECT_INHERIT_ACE,
            CONTAINER_INHERIT_ACE=CONTAINER_INHERIT_ACE,
            FILE_ALL_ACCESS=FILE_ALL_ACCESS,
        )
        return win32api, win32security, ntsecuritycon

    def _open_token(self, process: str, access: int) -> str:
        assert (process, access) == ("process", TOKEN_QUERY)
        return "token"

    def _token_information(self, token: str, kind: int) -> tuple[str, int]:
        assert (token, kind) == ("token", 1)
        return self.account, 0

    def _set(
        self,
        path: str,
        kind: int,
        info: int,
        owner: object,
        group: object,
        dacl: FakeAcl,
        sacl: object,
    ) -> None:
        assert owner is None and group is None and sacl is None  # only the DACL changes
        self.protected.append((path, kind, info, dacl))


class FakeMsvcrt:
    """`msvcrt.locking` on one byte: LK_NBLCK fails with OSError while another
    descriptor of the same file holds it, as LockFileEx does for another handle."""

    LK_UNLCK, LK_LOCK, LK_NBLCK = 0, 1, 2

    def __init__(self) -> None:
        self._held: dict[tuple[int, int], int] = {}  # (device, inode) -> holding fd
        self._guard = threading.Lock()
        self.calls: list[tuple[int, int, int]] = []  # (fd, mode, bytes)
        self.refused = 0

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 0  # the first byte
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        with self._guard:
            self.calls.append((fd, mode, nbytes))
            holder = self._held.get(key)
            if mode == self.LK_UNLCK:
                assert holder == fd, "unlocked by a descriptor that holds no lock"
                del self._held[key]
                return
            assert mode == self.LK_NBLCK, "LK_LOCK gives up after 10 s; never used"
            if holder is not None:
                self.refused += 1
                raise PermissionError(13, "Permission denied")  # EACCES, as _locking sets
            self._held[key] = fd


class FakeWinmm:
    """timeBeginPeriod / timeEndPeriod: the calls in order, 0 (TIMERR_NOERROR) each."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def timeBeginPeriod(self, period: int) -> int:
        self.calls.append(("begin", period))
        return 0

    def timeEndPeriod(self, period: int) -> int:
        self.calls.append(("end", period))
        return 0

    def raised(self) -> int:
        """How many begins are not ended yet."""
        return sum(1 if kind == "begin" else -1 for kind, _ in self.calls)


class FakeWs2_32:
    """WSAIoctl: the (socket, control code, input value) of each call; 0 (success), or
    SOCKET_ERROR (-1) with `error` for WSAGetLastError when one is given."""

    def __init__(self, error: int = 0) -> None:
        self.ioctls: list[tuple[int, int, int]] = []
        self.error = error

    def WSAIoctl(self, sock: Any, code: Any, inbuf: Any, *rest: Any) -> int:
        self.ioctls.append((sock.value, code.value, inbuf._obj.value))
        return -1 if self.error else 0

    def WSAGetLastError(self) -> int:
        return self.error


@dataclass
class AsOnWindows:
    """Every fake, for a test that runs the agent's Windows branches together."""

    pywin32: FakePywin32 = field(default_factory=FakePywin32)
    msvcrt: FakeMsvcrt = field(default_factory=FakeMsvcrt)
    winmm: FakeWinmm = field(default_factory=FakeWinmm)
    ws2_32: FakeWs2_32 = field(default_factory=FakeWs2_32)


def as_on_windows(monkeypatch: Any) -> AsOnWindows:
    """Patches the platform checks to say Windows, with the proactor loop's lack of
    add_reader, and puts the fakes where the Windows branches load their modules."""
    from edge_agent import filelock, files, platforms
    from edge_agent.sip import alarms, udp

    fakes = AsOnWindows()
    monkeypatch.setattr(platforms, "on_windows", lambda: True)
    monkeypatch.setattr(platforms, "on_linux", lambda: False)
    monkeypatch.setattr(platforms, "loop_has_readers", lambda loop: False)
    monkeypatch.setattr(files, "_pywin32", fakes.pywin32.modules)
    monkeypatch.setattr(filelock, "_msvcrt", lambda: fakes.msvcrt)
    monkeypatch.setattr(alarms, "winmm", lambda: fakes.winmm)
    monkeypatch.setattr(udp, "_ws2_32", lambda: fakes.ws2_32)
    return fakes
