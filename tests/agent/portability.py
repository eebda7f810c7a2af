"""The portability scanner: POSIX-only code in the customer side outside a branch that
cannot run on Windows. It reads the syntax tree (AST), not the text; its tests are in
test_portability.py.

What counts as POSIX-only (absent from Windows' Python 3.11, or never working on its
default event loop), each with the one exception a ``try`` may catch for it:

- importing a POSIX-only module (`POSIX_MODULES`: fcntl, termios, pwd, resource, ...),
  also ``importlib.import_module("fcntl")``, ``__import__("fcntl")`` and
  ``from os import fchmod`` — ImportError (ModuleNotFoundError);
- an attribute of `OS_POSIX`, `SIGNAL_POSIX`, ``time.CLOCK_*``/`TIME_POSIX`,
  `SELECT_POSIX`, `SOCKET_POSIX`, `ASYNCIO_POSIX` (``os.fchmod``, ``os.uname``,
  ``os.set_blocking`` — Windows has it from 3.12 —, ``select.poll``,
  ``socket.AF_UNIX``, ``asyncio.open_unix_connection``, ...), also under another name
  (``import os as o``) and as ``getattr(os, "fchmod")`` without a default —
  AttributeError;
- calling the event loop's reader methods (`LOOP_READERS`: add_reader, ...) on any
  object — NotImplementedError on Windows' proactor loop; its signal and Unix-socket
  methods (`LOOP_POSIX`) — NotImplementedError on every Windows loop;
- no exception to catch, only a branch: a string literal starting with a POSIX system
  path (`POSIX_PATHS`); ``os.open`` of a folder (Windows opens no folder; the scanner
  knows a folder by its expression's name: ending in dir, folder, directory or parent,
  as ``path.parent`` or ``state_dir``); subprocess keywords Windows refuses or ignores
  (`POSIX_KEYWORDS`: preexec_fn, start_new_session, user, umask, ...; a constant
  False/None is fine); ``from os import *`` (hides which names are used); a use of a
  function marked as the POSIX branch (``*_posix``, below).

Guarded, that is safe on Windows, is code

1. on the non-Windows side of a platform test: the ``else`` of ``if
   platforms.on_windows()`` or ``if sys.platform == "win32"``, the ``if`` of
   ``platforms.on_linux()``, ``sys.platform != "win32"``, ``os.name == "posix"``,
   ``sys.platform.startswith("linux")``; the same for conditional expressions and for
   the operands after a platform test in ``and``/``or``. ``not`` swaps the sides;
   ``A and B`` is non-Windows when either is, ``A or B`` only when both are (so ``if
   platforms.on_linux() or ready:`` guards nothing). ``platforms.loop_has_readers(loop)``
   guards only the reader methods (a selector loop has them on Windows too);
2. after such an ``if`` in the same block when the side that could be Windows ends in
   return, raise, continue or break (``if not platforms.on_linux(): return None``);
3. in the ``try`` body of a try statement with a handler for the exception named above
   (``except OSError`` guards nothing: ``os.fchmod`` is simply missing on Windows);
4. in a function or class explicitly marked as the POSIX branch by its name ending
   in ``_posix`` (``Posix`` for a class). Every use of a marked name must itself be
   guarded (rule 1 or 2), or it is reported too.

Every public predicate of edge_agent/platforms.py must be known here (`PREDICATES`):
a new one has to say which side it guards.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import reduce

# Names as words, one string per family (split below): easier to read than lists.
POSIX_MODULES = frozenset(
    "fcntl termios tty pty pwd grp resource posix syslog crypt spwd nis curses readline".split()  # noqa: SIM905
)
OS_POSIX = frozenset(
    """fchmod fchown lchown chown lchmod getuid geteuid getgid getegid getgroups setuid
    setgid seteuid setegid setreuid setregid getpgid setpgid getpgrp setpgrp getsid setsid
    killpg fork forkpty wait3 wait4 sync mkfifo mknod major minor makedev nice getloadavg
    statvfs fstatvfs pipe2 posix_fadvise posix_fallocate sched_setaffinity
    sched_getaffinity getpriority setpriority openpty ttyname ctermid uname fdatasync
    sysconf sysconf_names confstr pathconf fpathconf set_blocking get_blocking posix_spawn
    posix_spawnp register_at_fork chroot initgroups lockf pread pwrite preadv pwritev
    sendfile getresuid getresgid memfd_create eventfd
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
SELECT_POSIX = frozenset({"poll", "epoll", "kqueue", "kevent", "devpoll"})
SELECT_PREFIXES = ("POLL", "EPOLL", "KQ_")
SOCKET_POSIX = frozenset(
    {"SO_REUSEPORT", "AF_UNIX", "SO_PEERCRED", "SCM_RIGHTS", "SO_BINDTODEVICE"}
    | {"SO_RCVBUFFORCE", "SO_SNDBUFFORCE", "sethostname"}
)
ASYNCIO_POSIX = frozenset({"open_unix_connection", "start_unix_server"})
LOOP_READERS = frozenset({"add_reader", "add_writer", "remove_reader", "remove_writer"})
LOOP_POSIX = frozenset(
    {"add_signal_handler", "remove_signal_handler", "create_unix_connection"}
    | {"create_unix_server"}
)
POSIX_PATHS = ("/proc", "/dev/", "/sys/", "/etc/", "/var/", "/tmp/", "/run/", "/usr/")
FOLDER_NAMES = ("dir", "folder", "directory", "parent")
# preexec_fn raises on Windows; start_new_session is silently ignored there; the others
# raise too (3.11). Keywords named so only in subprocess calls: `user` is common elsewhere.
POSIX_KEYWORDS = frozenset({"preexec_fn", "start_new_session"})
SUBPROCESS_KEYWORDS = frozenset(
    {"user", "group", "extra_groups", "umask", "pass_fds", "process_group", "restore_signals"}
)
SUBPROCESS_CALLS = frozenset(
    {"Popen", "run", "call", "check_call", "check_output"}
    | {"create_subprocess_exec", "create_subprocess_shell"}
)
WATCHED_MODULES = frozenset({"os", "signal", "time", "socket", "select", "asyncio"})
EXITS = (ast.Return, ast.Raise, ast.Continue, ast.Break)

# What a finding is, by the one exception a `try` may catch for it.
IMPORT, ATTRIBUTE, READERS, LOOP, BRANCH_ONLY = (
    "import",
    "attribute",
    "readers",
    "loop",
    "branch only",
)
Cover = frozenset[str]
NOTHING: Cover = frozenset()
EVERYTHING: Cover = frozenset({IMPORT, ATTRIBUTE, READERS, LOOP, BRANCH_ONLY})
CAUGHT_BY: dict[str, Cover] = {
    "ImportError": frozenset({IMPORT}),
    "ModuleNotFoundError": frozenset({IMPORT}),
    "AttributeError": frozenset({ATTRIBUTE}),
    "NotImplementedError": frozenset({READERS, LOOP}),
}

# The public predicates of edge_agent/platforms.py: what each guards when true and when
# false (the non-Windows side guards everything).
PREDICATES: dict[str, tuple[Cover, Cover]] = {
    "on_windows": (NOTHING, EVERYTHING),
    "on_linux": (EVERYTHING, NOTHING),
    "loop_has_readers": (frozenset({READERS}), NOTHING),
}
WINDOWS_NAMES = frozenset({"win32", "nt", "Windows"})
WINDOWS_PREFIXES = ("win",)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _union(covers: Iterable[Cover]) -> Cover:
    return reduce(frozenset.union, covers, NOTHING)


def _intersection(covers: Iterable[Cover]) -> Cover:
    return reduce(frozenset.intersection, covers, EVERYTHING)


@dataclass
class Scanner:
    path: str
    modules: dict[str, str] = field(default_factory=dict)  # local name -> module
    findings: list[Finding] = field(default_factory=list)

    # --- walking, with what is covered where -------------------------------------------

    def block(self, statements: Sequence[ast.stmt], cover: Cover) -> None:
        for statement in statements:
            self.visit(statement, cover)
            if isinstance(statement, ast.If):  # rule 2: after an early exit
                when_true, when_false = self.sides(statement.test)
                if statement.body and isinstance(statement.body[-1], EXITS):
                    cover = cover | when_false
                if statement.orelse and isinstance(statement.orelse[-1], EXITS):
                    cover = cover | when_true

    def visit(self, node: ast.AST, cover: Cover) -> None:
        if isinstance(node, ast.If | ast.IfExp):
            self.visit(node.test, cover)
            when_true, when_false = self.sides(node.test)
            for branch, side in ((node.body, when_true), (node.orelse, when_false)):
                if isinstance(branch, list):
                    self.block(branch, cover | side)
                else:
                    self.visit(branch, cover | side)
            return
        if isinstance(node, ast.BoolOp):  # later operands run only after the earlier ones
            known = cover
            for value in node.values:
                self.visit(value, known)
                when_true, when_false = self.sides(value)
                known = known | (when_true if isinstance(node.op, ast.And) else when_false)
            return
        if isinstance(node, ast.Try | ast.TryStar):
            self.block(node.body, cover | self.caught(node.handlers))
            for handler in node.handlers:
                self.visit(handler, cover)
            self.block(node.orelse, cover)
            self.block(node.finalbody, cover)
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            marked = node.name.endswith("Posix" if isinstance(node, ast.ClassDef) else "_posix")
            for child in [*node.decorator_list, *getattr(node, "bases", [])]:
                self.visit(child, cover)
            self.block(node.body, EVERYTHING if marked else cover)
            return
        self.check(node, cover)
        for _, value in ast.iter_fields(node):
            self.visit_field(value, cover)

    def visit_field(self, value: object, cover: Cover) -> None:
        if isinstance(value, list):
            if value and all(isinstance(item, ast.stmt) for item in value):
                self.block(value, cover)
            else:
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item, cover)
        elif isinstance(value, ast.AST):
            self.visit(value, cover)

    @staticmethod
    def caught(handlers: Iterable[ast.ExceptHandler]) -> Cover:
        covered: set[str] = set()
        for handler in handlers:
            caught = handler.type
            names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
            for name in names:
                if isinstance(name, ast.Name):
                    covered |= CAUGHT_BY.get(name.id, NOTHING)
        return frozenset(covered)

    # --- platform tests ----------------------------------------------------------------

    def sides(self, test: ast.expr) -> tuple[Cover, Cover]:
        """What `test` guards when it is true, and when it is false."""
        if isinstance(test, ast.BoolOp):
            trues, falses = zip(*(self.sides(value) for value in test.values), strict=True)
            if isinstance(test.op, ast.And):
                return _union(trues), _intersection(falses)
            return _intersection(trues), _union(falses)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            when_true, when_false = self.sides(test.operand)
            return when_false, when_true
        if isinstance(test, ast.Call):
            name = _called_name(test)
            if name in PREDICATES:
                return PREDICATES[name]
            if (
                isinstance(test.func, ast.Attribute)
                and test.func.attr == "startswith"
                and _is_platform_value(test.func.value)
                and len(test.args) == 1
            ):
                return _sides_for(_strings(test.args[0]), prefix=True)
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            left, op, right = test.left, test.ops[0], test.comparators[0]
            if _is_platform_value(right):
                left, right = right, left
            if _is_platform_value(left) and isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn):
                when_true, when_false = _sides_for(_strings(right), prefix=False)
                if isinstance(op, ast.NotEq | ast.NotIn):
                    return when_false, when_true
                return when_true, when_false
        return NOTHING, NOTHING

    # --- what is POSIX-only --------------------------------------------------------------

    def check(self, node: ast.AST, cover: Cover) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.modules[alias.asname or alias.name.split(".")[0]] = alias.name
        found = self.posix_only(node)
        if found is not None and found[0] not in cover:
            self.findings.append(Finding(self.path, getattr(node, "lineno", 0), found[1]))

    def posix_only(self, node: ast.AST) -> tuple[str, str] | None:
        """(the kind, what) when `node` is POSIX-only."""
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] in POSIX_MODULES]
            return (IMPORT, f"import {names[0]}") if names else None
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            return self.posix_import_from(node.module, [a.name for a in node.names])
        if isinstance(node, ast.Call):
            return self.posix_call(node)
        if isinstance(node, ast.Attribute):
            if node.attr.endswith("_posix"):
                return BRANCH_ONLY, f"{node.attr} (a POSIX branch, entered unguarded)"
            module = self.module_of(node.value)
            if module is not None and posix_attribute(module, node.attr):
                return ATTRIBUTE, f"{module}.{node.attr}"
        if isinstance(node, ast.Name) and node.id.endswith("_posix"):
            return BRANCH_ONLY, f"{node.id} (a POSIX branch, entered unguarded)"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(POSIX_PATHS)
        ):
            return BRANCH_ONLY, f"the POSIX path {node.value[:40]!r}"
        return None

    def posix_import_from(self, module: str, names: list[str]) -> tuple[str, str] | None:
        if module.split(".")[0] in POSIX_MODULES:
            return IMPORT, f"from {module} import ..."
        if "*" in names and module in WATCHED_MODULES:
            return BRANCH_ONLY, f"from {module} import * (hides POSIX-only names)"
        flagged = [name for name in names if posix_attribute(module, name)]
        return (IMPORT, f"from {module} import {flagged[0]}") if flagged else None

    def posix_call(self, call: ast.Call) -> tuple[str, str] | None:
        name = _called_name(call)
        method = isinstance(call.func, ast.Attribute)
        if method and name in LOOP_READERS:
            return READERS, f".{name}() (no such method on Windows' proactor loop)"
        if method and name in LOOP_POSIX:
            return LOOP, f".{name}() (no Windows event loop has it)"
        first = _string(call.args[0]) if call.args else None
        if name in {"import_module", "__import__"} and first is not None:
            top = first.split(".")[0]
            return (IMPORT, f"{name}({first!r})") if top in POSIX_MODULES else None
        if name == "getattr" and len(call.args) == 2:
            return self.posix_getattr(call.args[0], call.args[1])
        if name == "open" and isinstance(call.func, ast.Attribute) and call.args:
            folder = self.module_of(call.func.value) == "os" and _names_a_folder(call.args[0])
            return (
                (BRANCH_ONLY, f"os.open({ast.unparse(call.args[0])}) (a folder)")
                if folder
                else None
            )
        return _posix_keyword(name, call.keywords)

    def posix_getattr(self, target: ast.expr, attribute: ast.expr) -> tuple[str, str] | None:
        """``getattr(os, "fchmod")``: without a default it raises as ``os.fchmod`` does."""
        module, name = self.module_of(target), _string(attribute)
        if module is None or name is None or not posix_attribute(module, name):
            return None
        return ATTRIBUTE, f"getattr({module}, {name!r}) without a default"

    def module_of(self, node: ast.expr) -> str | None:
        return self.modules.get(node.id) if isinstance(node, ast.Name) else None


def posix_attribute(module: str, name: str) -> bool:
    if module == "os":
        return name in OS_POSIX
    if module == "signal":
        return name in SIGNAL_POSIX
    if module == "time":
        return name.startswith("CLOCK_") or name in TIME_POSIX
    if module == "select":
        return name in SELECT_POSIX or name.startswith(SELECT_PREFIXES)
    if module == "socket":
        return name in SOCKET_POSIX
    if module == "asyncio":
        return name in ASYNCIO_POSIX
    return False


def _posix_keyword(name: str, keywords: list[ast.keyword]) -> tuple[str, str] | None:
    for keyword in keywords:
        value = keyword.value
        if isinstance(value, ast.Constant) and value.value in (None, False):
            continue  # the default: nothing asked of POSIX
        subprocess_only = keyword.arg in SUBPROCESS_KEYWORDS and name in SUBPROCESS_CALLS
        if keyword.arg in POSIX_KEYWORDS or subprocess_only:
            return BRANCH_ONLY, f"{name}({keyword.arg}=...) (POSIX only)"
    return None


def _called_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _is_platform_value(node: ast.expr) -> bool:
    """``sys.platform``, ``os.name`` or ``platform.system()``."""
    if isinstance(node, ast.Call) and not node.args:
        node = node.func
        pairs = {("platform", "system")}
    else:
        pairs = {("sys", "platform"), ("os", "name")}
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and (node.value.id, node.attr) in pairs
    )


def _string(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _strings(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        values = [_string(item) for item in node.elts]
        return None if None in values else [v for v in values if v is not None]
    text = _string(node)
    return None if text is None else [text]


def _sides_for(values: list[str] | None, *, prefix: bool) -> tuple[Cover, Cover]:
    """A platform value equal to (or starting with) one of `values`: true on Windows when
    all of them name it, true elsewhere only when none does; mixed guards nothing."""
    if not values:
        return NOTHING, NOTHING
    windows = [v.startswith(WINDOWS_PREFIXES) if prefix else v in WINDOWS_NAMES for v in values]
    if all(windows):
        return NOTHING, EVERYTHING
    if not any(windows):
        return EVERYTHING, NOTHING
    return NOTHING, NOTHING


def _names_a_folder(node: ast.expr) -> bool:
    text = ast.unparse(node).lower().rstrip(")")
    return text.endswith(FOLDER_NAMES)


def scan(source: str, path: str = "<snippet>") -> list[Finding]:
    scanner = Scanner(path)
    scanner.block(ast.parse(source).body, NOTHING)
    return scanner.findings
