"""Durable small files, written whole or not at all, in folders only the service may read.

Shared by the agent and the job service (both ship in the customer-side install;
docs/decisions/windows-portability.md). Who may read:

- POSIX: folders this module creates get mode 0700, files 0600 (``mkstemp``).
- Windows: folders this module creates get a protected DACL (nothing inherited from
  ``%ProgramData%``) granting full control to the account the process runs as (the
  service account), SYSTEM and the Administrators, inherited by everything created
  inside, including SQLite's own files. A folder that exists already keeps its
  rights: the installer creates the state folders with the same three entries
  (ops/windows/README.md), and the service host makes those it owns with this module
  where missing. pywin32 is imported on Windows only, when a folder is made.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_agent import platforms

log = logging.getLogger(__name__)

TEMP_PREFIX = "."  # a temp file's name: TEMP_PREFIX + the target's name + a random part
# Windows refuses to replace a file another process holds open (a virus scanner
# looking at the new file, a reader without FILE_SHARE_DELETE): retried meanwhile.
REPLACE_ATTEMPTS = 20
REPLACE_PAUSE_S = 0.05


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder: a crash
    leaves either the old file or the new one, never half of one."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def move_atomic(source: Path, target: Path) -> None:
    """Renames `source` to `target` in the same file system (one step: the file is in
    one place or the other, bytes and modification time unchanged), then makes both
    folders durable. The caller picks a `target` that does not exist yet."""
    private_dir(target.parent)
    rename(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


def rename(source: Path, target: Path) -> None:
    """One rename (retried on Windows while another process holds the file), not yet
    durable: for many moves in a row, the caller fsyncs both folders once at the end."""
    _replace(str(source), target)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True).encode())


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default


def private_dir(folder: Path) -> None:
    """Makes `folder` and its missing parents, each readable by the service only
    (see the module text); folders that exist are left as they are."""
    if folder.is_dir():
        return
    missing = [folder, *(p for p in folder.parents if not p.exists())]
    for made in reversed(missing):
        try:
            made.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another thread or process: theirs to protect
        if platforms.on_windows():
            try:
                restrict_to_service_account(made)
            except BaseException:
                made.rmdir()  # never leave a folder with the rights it inherited
                raise


def fsync_dir(folder: Path) -> None:
    """Makes renames and unlinks in `folder` durable. POSIX keeps the entry in the
    folder, whose own fsync persists it. Windows cannot open a folder as a file; NTFS
    journals the rename itself (after a power loss the old or the new file is there)."""
    if platforms.on_windows():
        return
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def restrict_to_service_account(folder: Path) -> None:
    """Windows: a protected DACL on `folder` with full control for the process's own
    account, SYSTEM and the Administrators, inherited by files and subfolders."""
    win32api, win32security, ntsecuritycon = _pywin32()
    token = win32security.OpenProcessToken(win32api.GetCurrentProcess(), ntsecuritycon.TOKEN_QUERY)
    account = win32security.GetTokenInformation(token, win32security.TokenUser)[0]
    system = win32security.CreateWellKnownSid(win32security.WinLocalSystemSid, None)
    admins = win32security.CreateWellKnownSid(win32security.WinBuiltinAdministratorsSid, None)
    inherited = ntsecuritycon.OBJECT_INHERIT_ACE | ntsecuritycon.CONTAINER_INHERIT_ACE
    dacl = win32security.ACL()
    for sid in (account, system, admins):
        dacl.AddAccessAllowedAceEx(
            win32security.ACL_REVISION, inherited, ntsecuritycon.FILE_ALL_ACCESS, sid
        )
    win32security.SetNamedSecurityInfo(
        str(folder),
        win32security.SE_FILE_OBJECT,
        win32security.DACL_SECURITY_INFORMATION | win32security.PROTECTED_DACL_SECURITY_INFORMATION,
        None,
        None,
        dacl,
        None,
    )


def _pywin32() -> tuple[Any, Any, Any]:
    try:
        return (
            importlib.import_module("win32api"),
            importlib.import_module("win32security"),
            importlib.import_module("ntsecuritycon"),
        )
    except ImportError as exc:
        raise ImportError(
            "pywin32 is needed on Windows to keep the service's files private: "
            "pip install rundruf brings it on Windows (reinstall it)"
        ) from exc


def _replace(source: str, target: Path) -> None:
    if not platforms.on_windows():
        os.replace(source, target)
        return
    for attempt in range(1, REPLACE_ATTEMPTS + 1):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == REPLACE_ATTEMPTS:
                raise
            log.debug("%s is held open by another process; retrying the rename", target)
            time.sleep(REPLACE_PAUSE_S)
