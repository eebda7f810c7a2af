"""SwyxWare user states through COM (`IpPbxSrv.PBXConfig`), where the agent runs on Windows.

Swyx knowledge base kb2910 makes the object with `CreateObject("IpPBxSrv.PBXConfig")`,
then `Initialize PBXUser` ("necessary to allow PBXConfig to provide complete
functionality"), and reads `GetUserByAddress(<group name>)`: the group's members as
`PBXUser` objects with `UserID` and `State` (states on swyxforum.com, docs/swyx.md).
Outside call routing there is no script user to pass, so `ComStateReader` passes the
`PBXUser` of the agent's own SwyxWare user ("Rundruf", found with `GetUserByAddress`);
public programs that use the object from outside call no `Initialize` at all, so a
failing `Initialize` is logged and the states are read anyway.

Every COM call runs on one thread of its own (`ComThread`) that entered a COM
apartment (`pythoncom.CoInitialize`, imported only on Windows): COM objects belong to
the thread that made them, and a slow SwyxServer must never hold up the event loop,
which also paces the calls' audio. `states_from_users` is pure and tested with fake
objects on any system; pywin32 is imported only when the reader first runs.

Not verified on a real SwyxWare: docs/swyx.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from edge_agent import platforms
from edge_agent.pbx.port import Group, UserState

log = logging.getLogger(__name__)

PROG_ID = "IpPBxSrv.PBXConfig"
_KNOWN = {s.value for s in UserState}
T = TypeVar("T")


def _read(obj: Any, name: str) -> Any:
    """A COM property; late-bound objects may hand it out as a method instead."""
    value = getattr(obj, name)
    return value() if callable(value) else value


def states_from_users(users: Iterable[Any]) -> dict[str, UserState]:
    """`{user id: state}` of PBXUser-like objects; objects without a usable id or a
    known state (0-8) are left out, so a later SwyxWare state is "unknown", not wrong."""
    states: dict[str, UserState] = {}
    for user in users:
        try:
            user_id, raw = _read(user, "UserID"), _read(user, "State")
        except Exception as exc:  # a COM object that does not answer: skip it
            log.debug("a PBXUser without UserID/State: %s", exc)
            continue
        if user_id is None or str(user_id) == "" or isinstance(raw, bool):
            continue
        try:
            state = int(raw)
        except (TypeError, ValueError):
            continue
        if state in _KNOWN:
            states[str(user_id)] = UserState(state)
    return states


class ComThread:
    """One daemon thread in its own COM apartment that runs every COM call, in order.

    A daemon thread, not an executor: a COM call that never returns must not keep the
    agent from stopping.
    """

    def __init__(self, *, windows: bool | None = None) -> None:
        self.windows = platforms.on_windows() if windows is None else windows
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def call(self, function: Callable[[], T]) -> T:
        """Runs `function` on the COM thread; the event loop awaits it meanwhile."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._start()
        self._jobs.put((function, future))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Lets the thread leave its apartment and end after the calls already queued."""
        if self._thread is not None:
            self._jobs.put(None)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="rundruf-swyx-com", daemon=True
                )
                self._thread.start()

    def _serve(self) -> None:
        pythoncom: Any = None
        if self.windows:
            pythoncom = importlib.import_module("pythoncom")
            pythoncom.CoInitialize()  # a single-threaded apartment, as Dispatch expects
        try:
            while (job := self._jobs.get()) is not None:
                function, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(function())
                except BaseException as exc:  # handed to the awaiting coroutine
                    future.set_exception(exc)
        finally:
            if pythoncom is not None:
                pythoncom.CoUninitialize()


class ComStateReader:
    """The `StateReader` of `SwyxPbx` over COM: the states of every group's members."""

    def __init__(
        self,
        dispatch: Callable[[str], Any] | None = None,
        *,
        initialize_as: str | None = None,
        thread: ComThread | None = None,
    ) -> None:
        # `dispatch(prog_id)` makes the COM object; pywin32's by default.
        self._dispatch = dispatch
        # The SwyxWare user whose PBXUser goes to `Initialize` (the dialer's, "Rundruf").
        self.initialize_as = initialize_as
        self.thread = thread or ComThread()
        self._config: Any = None

    async def __call__(self, groups: Sequence[Group]) -> Mapping[str, UserState]:
        wanted = [group.name for group in groups if group.member_ids]
        if not wanted:
            return {}
        return await self.thread.call(lambda: self._states(wanted))

    def _states(self, group_names: Sequence[str]) -> dict[str, UserState]:
        """On the COM thread."""
        config = self._pbx_config()
        states: dict[str, UserState] = {}
        for name in group_names:
            states.update(states_from_users(config.GetUserByAddress(name)))
        return states

    def _pbx_config(self) -> Any:
        """On the COM thread: the PBXConfig object, made and initialised once."""
        if self._config is None:
            dispatch = self._dispatch
            if dispatch is None:
                client: Any = importlib.import_module("win32com.client")
                dispatch = client.Dispatch
            config = dispatch(PROG_ID)
            self._initialize(config)
            self._config = config
        return self._config

    def _initialize(self, config: Any) -> None:
        if not self.initialize_as:
            return
        try:
            users = list(config.GetUserByAddress(self.initialize_as))
            if not users:
                log.warning("PBXConfig not initialised: no SwyxWare user %r", self.initialize_as)
                return
            config.Initialize(users[0])
        except Exception as exc:  # pywintypes.com_error; the states may still be readable
            log.warning("PBXConfig.Initialize failed (%s); reading states without it", exc)
