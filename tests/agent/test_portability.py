"""Windows, by construction: no POSIX-only call in the customer-side code outside a
guarded branch. The scan reads the syntax tree (AST) of every module of edge_agent/
(with the Windows service host) and swyx_jobservice/, not its text.

What counts as POSIX-only (absent from Windows' Python 3.11, or never working on its
default event loop):

- importing fcntl, termios, tty, pty, pwd, grp, resource, posix, syslog, crypt, spwd,
  nis, curses, readline;
- ``os.<name>`` for the functions and flags of `OS_POSIX` (fchmod, fchown, getuid,
  geteuid, fork, killpg, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_CLOEXEC, ...),
  ``signal.<name>`` of `SIGNAL_POSIX` (SIGKILL, SIGHUP, SIGUSR1, alarm, ...),
  ``time.CLOCK_*`` and `TIME_POSIX`, ``socket.SO_REUSEPORT``; also taken with
  ``from os import ...`` and under another name (``import os as o``);
- calling the event-loop methods add_reader, add_writer, remove_reader, remove_writer,
  add_signal_handler, remove_signal_handler, on any object (Windows' proactor loop
  has none of them);
- a string literal that starts with a POSIX system path (`POSIX_PATHS`: /proc, /dev/,
  /sys/, /etc/, /var/, /tmp/, /run/, /usr/).

A guarded branch is code

1. in either branch of an ``if`` or a conditional expression whose test asks
   ``sys.platform``, ``os.name``, ``platform.system()`` or calls a predicate of
   edge_agent/platforms.py (``on_windows()``, ``on_linux()``, ``loop_has_readers()``);
2. after such an ``if`` in the same block when its body ends in return, raise,
   continue or break (an early exit: ``if not platforms.on_linux(): return None``);
3. in the ``try`` body of a try statement with a handler for ImportError,
   ModuleNotFoundError, AttributeError or NotImplementedError;
4. in a function or class explicitly marked as the POSIX branch by its name ending
   in ``_posix`` (``Posix`` for a class). Every use of a marked name must itself be
   guarded, or it is reported too.

The Windows branches themselves are tested elsewhere with the platform check patched
(tests/agent/test_files.py, test_filelock.py, test_dialer_sip_windows.py,
test_windows_stop.py, tests/sip_unit/test_pacer_windows.py).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("edge_agent", "swyx_jobservice")

# Names as words, one string per family (split below): easier to read than lists.
POSIX_MODULES = frozenset(
    "fcntl termios tty pty pwd grp resource posix syslog crypt spwd nis curses readline".split()  # noqa: SIM905
)
OS_POSIX = frozenset(
    """fchmod fchown lchown chown lchmod getuid geteuid getgid getegid getgroups setuid
    setgid seteuid setegid setreuid setregid getpgid setpgid getpgrp setpgrp getsid setsid
    killpg fork forkpty wait3 wait4 sync mkfifo mknod major minor makedev nice getloadavg
    statvfs fstatvfs pipe2 posix_fadvise posix_fallocate sched_setaffinity
    sched_getaffinity getpriority setpriority openpty ttyname ctermid
    O_DIRECTORY O_NOFOLLOW O_NONBLOCK O_CLOEXEC O_NOCTTY O_DSYNC O_SYNC O_RSYNC O_NDELAY
    O_ASYNC O_NOATIME O_PATH O_TMPFILE O_EXLOCK O_SHLOCK WNOHANG WUNTRACED""".split()  # noqa: SIM905
)
SIGNAL_POSIX = frozenset(
    """SIGKILL SIGHUP SIGUSR1 SIGUSR2 SIGALRM SIGCHLD SIGPIPE SIGQUIT SIGSTOP SIGCONT
    SIGTSTP SIGWINCH SIGTTIN SIGTTOU SIGIO SIGPROF SIGVTALRM SIGXCPU SIGXFSZ SIGSYS SIGTRAP
    SIGURG SIGBUS SIGPOLL alarm setitimer getitimer pause pthread_kill pthread_sigmask
    siginterrupt sigwait sigwaitinfo sigtimedwait sigpending""".split()  # noqa: SIM905
)
TIME_POSIX = frozenset(
    {"clock_gettime", "clock_gettime_ns", "clock_settime", "clock_getres", "tzset"}
)
SOCKET_POSIX = frozenset({"SO_REUSEPORT"})
LOOP_POSIX = frozenset(
    {
        "add_reader",
        "add_writer",
        "remove_reader",
        "remove_writer",
        "add_signal_handler",
        "remove_signal_handler",
    }
)
POSIX_PATHS = ("/proc", "/dev/", "/sys/", "/etc/", "/var/", "/tmp/", "/run/", "/usr/")
GUARD_ERRORS = frozenset(
    {"ImportError", "ModuleNotFoundError", "AttributeError", "NotImplementedError"}
)
EXITS = (ast.Return, ast.Raise, ast.Continue, ast.Break)


def platform_predicates() -> frozenset[str]:
    """The public functions of edge_agent/platforms.py."""
    tree = ast.parse((ROOT / "edge_agent" / "platforms.py").read_text(encoding="utf-8"))
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    )


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


@dataclass
class Scanner:
    path: str
    predicates: frozenset[str]
    modules: dict[str, str] = field(default_factory=dict)  # local name -> module
    findings: list[Finding] = field(default_factory=list)

    def block(self, statements: Sequence[ast.stmt], guarded: bool) -> None:
        for statement in statements:
            self.visit(statement, guarded)
            if (
                isinstance(statement, ast.If)
                and self.is_platform_test(statement.test)
                and statement.body
                and isinstance(statement.body[-1], EXITS)
            ):
                guarded = True  # rule 2: what follows an early exit is the other branch

    def visit(self, node: ast.AST, guarded: bool) -> None:
        if isinstance(node, (ast.If, ast.IfExp)):
            self.visit(node.test, guarded)
            inner = guarded or self.is_platform_test(node.test)
            for branch in (node.body, node.orelse):
                if isinstance(branch, list):
                    self.block(branch, inner)
                else:
                    self.visit(branch, inner)
            return
        if isinstance(node, (ast.Try, ast.TryStar)):
            self.block(node.body, guarded or self.guards_imports(node.handlers))
            for handler in node.handlers:
                self.visit(handler, guarded)
            self.block(node.orelse, guarded)
            self.block(node.finalbody, guarded)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            marked = node.name.endswith("_posix" if not isinstance(node, ast.ClassDef) else "Posix")
            for child in [*node.decorator_list, *getattr(node, "bases", [])]:
                self.visit(child, guarded)
            self.block(node.body, guarded or marked)
            return
        self.check(node, guarded)
        for value in ast.iter_fields(node):
            self.visit_field(value[1], guarded)

    def visit_field(self, value: object, guarded: bool) -> None:
        if isinstance(value, list):
            if value and all(isinstance(item, ast.stmt) for item in value):
                self.block(value, guarded)
            else:
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item, guarded)
        elif isinstance(value, ast.AST):
            self.visit(value, guarded)

    def check(self, node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.modules[alias.asname or alias.name.split(".")[0]] = alias.name
        what = self.posix_only(node)
        if what is not None and not guarded:
            self.findings.append(Finding(self.path, getattr(node, "lineno", 0), what))

    def posix_only(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] in POSIX_MODULES]
            return f"import {names[0]}" if names else None
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module.split(".")[0] in POSIX_MODULES:
                return f"from {node.module} import ..."
            flagged = [a.name for a in node.names if self.posix_attribute(node.module, a.name)]
            return f"from {node.module} import {flagged[0]}" if flagged else None
        called = node.func if isinstance(node, ast.Call) else None
        if isinstance(called, ast.Attribute) and called.attr in LOOP_POSIX:
            return f".{called.attr}() (no such method on Windows' proactor loop)"
        if isinstance(node, ast.Attribute):
            if node.attr.endswith("_posix"):
                return f"{node.attr} (a POSIX branch, entered unguarded)"
            if isinstance(node.value, ast.Name):
                module = self.modules.get(node.value.id)
                if module is not None and self.posix_attribute(module, node.attr):
                    return f"{module}.{node.attr}"
        if isinstance(node, ast.Name) and node.id.endswith("_posix"):
            return f"{node.id} (a POSIX branch, entered unguarded)"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(POSIX_PATHS)
        ):
            return f"the POSIX path {node.value[:40]!r}"
        return None

    @staticmethod
    def posix_attribute(module: str, name: str) -> bool:
        if module == "os":
            return name in OS_POSIX
        if module == "signal":
            return name in SIGNAL_POSIX
        if module == "time":
            return name.startswith("CLOCK_") or name in TIME_POSIX
        if module == "socket":
            return name in SOCKET_POSIX
        return False

    def is_platform_test(self, test: ast.expr) -> bool:
        for node in ast.walk(test):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (node.value.id, node.attr) in {("sys", "platform"), ("os", "name")}:
                    return True
                if (node.value.id, node.attr) == ("platform", "system"):
                    return True
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in self.predicates:
                    return True
        return False

    @staticmethod
    def guards_imports(handlers: Iterable[ast.ExceptHandler]) -> bool:
        for handler in handlers:
            caught = handler.type
            names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
            for name in names:
                if isinstance(name, ast.Name) and name.id in GUARD_ERRORS:
                    return True
        return False


def scan(source: str, path: str = "<snippet>") -> list[Finding]:
    scanner = Scanner(path, platform_predicates())
    scanner.block(ast.parse(source).body, guarded=False)
    return scanner.findings


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
    ],
)
def test_the_scanner_accepts_a_guarded_or_portable_call(source: str) -> None:
    assert scan(source) == []


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
