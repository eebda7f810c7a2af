"""Windows, by construction: no POSIX-only call in the customer-side code (edge_agent/,
with the Windows service host, and swyx_jobservice/) outside a guarded branch. The rules,
what counts as POSIX-only and what as guarded, are the scanner's (tests/agent/portability.py);
these are its tests, on the tree and on snippets that show it can fail.

The Windows branches themselves are tested elsewhere with the platform check patched
(tests/agent/test_files.py, test_filelock.py, test_dialer_sip_windows.py,
test_windows_stop.py, test_windows_ops.py, tests/sip_unit/test_pacer_windows.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.agent.portability import PREDICATES, Finding, scan

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("edge_agent", "swyx_jobservice")
PLATFORMS = ROOT / "edge_agent" / "platforms.py"


def customer_modules() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py"))


# --- the code base ------------------------------------------------------------------


def test_the_customer_side_has_no_unguarded_posix_only_call() -> None:
    modules = customer_modules()
    found: list[Finding] = []
    for path in modules:
        found += scan(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))

    assert len(modules) > 60  # the whole of both deployables was read
    assert not found, "POSIX-only outside a guarded branch:\n" + "\n".join(map(str, found))


# --- the scanner itself: it must be able to fail -----------------------------------


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import fcntl\nfcntl.flock(fd, fcntl.LOCK_EX)\n", "import fcntl"),
        ("import os\nos.fchmod(fd, 0o600)\n", "os.fchmod"),
        ("import os\nfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)\n", "os.O_DIRECTORY"),
        ("import os\n_TFD = os.O_NONBLOCK, os.O_CLOEXEC\n", "os.O_NONBLOCK"),
        ("import os as system\nsystem.getuid()\n", "os.getuid"),
        ("from os import geteuid\n", "from os import geteuid"),
        ("import signal\nos.kill(pid, signal.SIGKILL)\n", "signal.SIGKILL"),
        ("import time\nfd = create(time.CLOCK_MONOTONIC, 0)\n", "time.CLOCK_MONOTONIC"),
        ("loop.add_reader(sock.fileno(), callback)\n", ".add_reader()"),
        ("loop.add_signal_handler(15, stop)\n", ".add_signal_handler()"),
        ('status = open("/proc/self/status").read()\n', "the POSIX path '/proc/self/status'"),
        ('null = "/dev/null"\n', "the POSIX path '/dev/null'"),
        ("import pwd\n", "import pwd"),
        ("def lock(fd):\n    _flock_posix(fd)\n", "_flock_posix (a POSIX branch"),
        # A handler for OSError is no guard: os.fchmod is simply missing on Windows.
        ("import os\ntry:\n    os.fchmod(fd, 0o600)\nexcept OSError:\n    pass\n", "os.fchmod"),
        # An `if` that does not exit guards nothing after it.
        (
            "import sys, time\nif sys.platform == 'win32':\n    x = 1\nc = time.CLOCK_MONOTONIC\n",
            "time.CLOCK_MONOTONIC",
        ),
        # The old agent write, before edge_agent/files.py was made portable.
        (
            "import os\ndef write_atomic(path, fd):\n    os.fchmod(fd, 0o600)\n"
            "    dir_fd = os.open(path.parent, os.O_RDONLY)\n    os.fsync(dir_fd)\n",
            "os.fchmod",
        ),
        # Names added after a review found them missing.
        ("import os\nsystem = os.uname().sysname\n", "os.uname"),
        ("import os\nos.fdatasync(fd)\n", "os.fdatasync"),
        ("import os\npage = os.sysconf('SC_PAGE_SIZE')\n", "os.sysconf"),
        ("import os\nos.set_blocking(fd, False)\n", "os.set_blocking"),  # Windows: 3.12+
        ("import select\npoller = select.poll()\n", "select.poll"),
        ("import select\nep = select.epoll()\n", "select.epoll"),
        ("import socket\ns = socket.socket(socket.AF_UNIX)\n", "socket.AF_UNIX"),
        (
            "import asyncio\nr, w = await asyncio.open_unix_connection(p)\n",
            "asyncio.open_unix_connection",
        ),
        ("await loop.create_unix_connection(factory, p)\n", ".create_unix_connection()"),
        ("subprocess.Popen(cmd, preexec_fn=os.setsid)\n", "Popen(preexec_fn=...)"),
        ("subprocess.run(cmd, start_new_session=True)\n", "run(start_new_session=...)"),
        ("subprocess.run(cmd, user='svc')\n", "run(user=...)"),
        ("import os\nfd = os.open(path.parent, os.O_RDONLY)\n", "os.open(path.parent) (a folder)"),
        ("import os\nfd = os.open(self.state_dir, 0)\n", "os.open(self.state_dir) (a folder)"),
        ("from os import *\n", "from os import * (hides"),
        ("import os\nchmod = getattr(os, 'fchmod')\n", "getattr(os, 'fchmod') without a default"),
        ("import importlib\nf = importlib.import_module('fcntl')\n", "import_module('fcntl')"),
        ("f = __import__('fcntl')\n", "__import__('fcntl')"),
        # The Windows side of a platform test guards nothing POSIX.
        ("import os, sys\nif sys.platform == 'win32':\n    os.fchmod(fd, 0)\n", "os.fchmod"),
        ("import os\nif platforms.on_windows():\n    os.fchmod(fd, 0)\n", "os.fchmod"),
        ("import os\nif os.name == 'nt':\n    os.fchmod(fd, 0)\n", "os.fchmod"),
        (
            "import os, sys\nif sys.platform != 'win32':\n    pass\nelse:\n    os.fchmod(fd, 0)\n",
            "os.fchmod",
        ),
        ("import os, sys\nx = os.fchmod(fd, 0) if sys.platform == 'win32' else 0\n", "os.fchmod"),
        ("import os\nx = 0 if platforms.on_linux() else os.fchmod(fd, 0)\n", "os.fchmod"),
        ("import os\nif not platforms.on_linux():\n    os.fchmod(fd, 0)\n", "os.fchmod"),
        ("import os\nif sys.platform.startswith('win'):\n    os.fchmod(fd, 0)\n", "os.fchmod"),
        ("import os\nif sys.platform in ('win32', 'linux'):\n    os.fchmod(fd, 0)\n", "os.fchmod"),
        # An early exit the wrong way round: what follows may run on Windows.
        (
            "import os\ndef f():\n    if platforms.on_linux():\n        return\n"
            "    os.fchmod(fd, 0)\n",
            "os.fchmod",
        ),
        (
            "import os\ndef f():\n    if platforms.on_windows():\n        pass\n    else:\n"
            "        return\n    os.fchmod(fd, 0)\n",
            "os.fchmod",
        ),
        # `or` with anything but platform tests guards nothing.
        ("import os\nif platforms.on_windows() or True:\n    os.fchmod(fd, 0)\n", "os.fchmod"),
        ("import os\nif platforms.on_linux() or ready:\n    os.fchmod(fd, 0)\n", "os.fchmod"),
        ("import os\nok = platforms.on_linux() or os.fchmod(fd, 0)\n", "os.fchmod"),
        # A loop that has readers is no POSIX system: it guards the reader methods only.
        ("import os\nif platforms.loop_has_readers(loop):\n    os.fchmod(fd, 0)\n", "os.fchmod"),
        (
            "if platforms.loop_has_readers(loop):\n    loop.add_signal_handler(2, stop)\n",
            ".add_signal_handler()",
        ),
        # A handler for another exception than the one the call raises guards nothing.
        ("import os\ntry:\n    os.fchmod(fd, 0)\nexcept ImportError:\n    pass\n", "os.fchmod"),
        ("try:\n    import fcntl\nexcept AttributeError:\n    pass\n", "import fcntl"),
        (
            "try:\n    loop.add_reader(fd, cb)\nexcept AttributeError:\n    pass\n",
            ".add_reader()",
        ),
        (
            "import os\ntry:\n    fd = os.open(path.parent, 0)\nexcept AttributeError:\n    pass\n",
            "os.open(path.parent)",
        ),
        ("import os\ntry:\n    os.fchmod(fd, 0)\nexcept Exception:\n    pass\n", "os.fchmod"),
    ],
)
def test_the_scanner_flags_a_bare_posix_only_call(source: str, what: str) -> None:
    found = scan(source)

    assert found, f"not flagged: {source!r}"
    assert found[0].what.startswith(what)


@pytest.mark.parametrize(
    "source",
    [
        "import sys\nif sys.platform != 'win32':\n    import fcntl\n",
        "import os\nif os.name == 'posix':\n    os.fchmod(fd, 0o600)\n",
        "from edge_agent import platforms\n"
        "if platforms.on_windows():\n    pass\nelse:\n    loop.add_reader(fd, cb)\n",
        "if platforms.loop_has_readers(loop):\n    loop.add_reader(fd, cb)\n"
        "    stop = lambda: loop.remove_reader(fd)\n",
        "import os, sys\nflags = os.O_NOFOLLOW if sys.platform != 'win32' else 0\n",
        "try:\n    import fcntl\nexcept ImportError:\n    fcntl = None\n",
        "import os\ntry:\n    os.getuid()\nexcept AttributeError:\n    pass\n",
        "import os, time\ndef create():\n    if not platforms.on_linux():\n        return None\n"
        "    return make(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)\n",
        "def _flock_posix(fd):\n    import fcntl\n    fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "def lock(fd):\n    if platforms.on_windows():\n        lock_windows(fd)\n"
        "    else:\n        _flock_posix(fd)\n",
        "import os, signal\nos.kill(pid, signal.SIGTERM)\n",  # SIGTERM exists on Windows
        "import os\nflags = getattr(os, 'O_NOFOLLOW', 0)\n",
        'url = "/graphql"\n',
        # The non-Windows side, however it is asked.
        "import os, sys\nif sys.platform == 'win32':\n    pass\nelse:\n    os.fchmod(fd, 0)\n",
        "import os\nif not platforms.on_windows():\n    os.fchmod(fd, 0)\n",
        "import os\nif os.name != 'nt':\n    os.fchmod(fd, 0)\n",
        "import os\nif sys.platform.startswith('linux'):\n    os.fchmod(fd, 0)\n",
        "import sys\nif sys.platform in ('linux', 'darwin'):\n    import fcntl\n",
        "import os, platform\nif platform.system() != 'Windows':\n    os.fchmod(fd, 0)\n",
        "import os, sys\nx = 0 if sys.platform == 'win32' else os.fchmod(fd, 0)\n",
        "import os\nok = platforms.on_linux() and os.fchmod(fd, 0)\n",
        "import os\nok = platforms.on_windows() or os.fchmod(fd, 0)\n",
        "import os\ndef f():\n    if platforms.on_windows():\n        return\n"
        "    os.fchmod(fd, 0)\n",
        "import os\ndef f():\n    if platforms.on_linux():\n        pass\n    else:\n"
        "        return\n    os.fchmod(fd, 0)\n",
        # `and` needs one platform test, `or` all of them.
        "import os\nif platforms.on_linux() and ready:\n    os.fchmod(fd, 0)\n",
        "import os, sys\nif platforms.on_linux() or sys.platform == 'darwin':\n"
        "    os.fchmod(fd, 0)\n",
        "import os\ndef f():\n"
        "    if not platforms.on_linux() or not platforms.loop_has_readers(lp):\n"
        "        return\n    lp.add_reader(fd, cb)\n    os.fchmod(fd, 0)\n",
        # The exception the missing thing raises.
        "import os\ntry:\n    os.fchmod(fd, 0)\nexcept (OSError, AttributeError):\n    pass\n",
        "try:\n    from fcntl import flock\nexcept ModuleNotFoundError:\n    flock = None\n",
        "try:\n    loop.add_reader(fd, cb)\nexcept NotImplementedError:\n    endpoint()\n",
        "import os\nchmod = getattr(os, 'fchmod', None)\n",
        "import importlib\nwin32api = importlib.import_module('win32api')\n",
        "import os\nfd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)\n",
        "import os\nif platforms.on_linux():\n    fd = os.open(path.parent, os.O_RDONLY)\n",
        "subprocess.run(cmd, start_new_session=False, preexec_fn=None)\n",
        "pbx = SwyxPbx(runner, user='svc')\n",
        "from os import path, replace\n",
    ],
)
def test_the_scanner_accepts_a_guarded_or_portable_call(source: str) -> None:
    assert scan(source) == []


def test_the_scanner_knows_what_each_platform_predicate_guards() -> None:
    """A new predicate in edge_agent/platforms.py must be given its sides here."""
    tree = ast.parse(PLATFORMS.read_text(encoding="utf-8"))
    public = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    }

    assert public == set(PREDICATES)


PLATFORM_VALUES = {("sys", "platform"), ("os", "name"), ("platform", "system")}


def platform_questions(source: str) -> list[int]:
    """Lines that ask `sys.platform`, `os.name` or `platform.system` directly."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and (node.value.id, node.attr) in PLATFORM_VALUES
    ]


def test_every_platform_question_goes_through_platforms() -> None:
    """edge_agent/platforms.py's rule: every Windows or POSIX branch asks it, so that a
    test patching it runs every Windows branch."""
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in customer_modules()
        if path != PLATFORMS
        for line in platform_questions(path.read_text(encoding="utf-8"))
    ]

    assert platform_questions(PLATFORMS.read_text(encoding="utf-8"))  # the check can see
    assert not found, found


def test_nothing_moves_the_customer_side_off_windows_default_loop() -> None:
    """The agent stays on the proactor loop on Windows: the only one that runs the
    Swyx adapter's PowerShell subprocesses, and not capped at 512 sockets by select()."""
    chosen = {"set_event_loop_policy", "WindowsSelectorEventLoopPolicy", "SelectorEventLoop"}
    found = []
    for path in customer_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if name in chosen:
                found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}: {name}")
    assert not found, found
