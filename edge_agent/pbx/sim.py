"""The SwyxWare simulator: the agent's embedded default PBX and the test double.

`SimPbx` is the `Pbx` adapter; `SimControl` is the synchronous control surface
for tests and the demo (change user states, inject faults), usable from
another process. Both work on one JSON state file (see `sim_state`), so the
simulated PBX survives agent restarts and the demo can change it while the
agent runs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from edge_agent.pbx import sim_demo
from edge_agent.pbx.errors import (
    PbxError,
    PbxLoginRefused,
    PbxNotLoggedIn,
    PbxUnreachable,
)
from edge_agent.pbx.port import Directory, Group, Pbx, User, UserState
from edge_agent.pbx.sim_state import SimFaults, SimState, StateFile

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HOST = "swyx.local"
DEFAULT_ADMIN_USER = "admin"
# The simulator's well-known password for demos and tests; it guards nothing real.
DEFAULT_ADMIN_PASSWORD = "simulator"  # noqa: S105


class SimPbx(Pbx):
    """The simulated SwyxWare server behind the `Pbx` port.

    The login lives in this instance only, as a real session would: a restarted
    agent logs in again. A missing state file is a server that is not there.
    """

    adapter = "sim"

    def __init__(self, state_path: Path) -> None:
        self._file = StateFile(state_path)
        self._host: str | None = None

    @property
    def state_path(self) -> Path:
        return self._file.path

    async def login(self, host: str, admin_user: str, password: str) -> None:
        # Logging in again ends the current login first, whatever the outcome.
        self._host = None
        state = await self._answer(host)
        if host.casefold() != state.host.casefold():
            raise PbxUnreachable(f"The server '{host}' is not reachable")
        if state.faults.refuse_login:
            raise PbxLoginRefused(f"The server '{host}' refused the login of '{admin_user}'")
        user_ok = admin_user.casefold() == state.admin_user.casefold()
        # Compare in constant time, as a server would; the loop is not worth a side channel.
        password_ok = secrets.compare_digest(password.encode(), state.admin_password.encode())
        if not (user_ok and password_ok):
            raise PbxLoginRefused(f"Login failed for '{admin_user}': wrong user name or password")
        self._host = host
        log.info("logged in to simulated SwyxWare %s as %s", host, admin_user)

    async def reachable(self) -> bool:
        try:
            await self._answer(self._host or "")  # only the outcome matters here
        except PbxError:
            return False
        return True

    async def directory(self) -> Directory:
        return (await self._answer(self._logged_in_host())).directory()

    async def create_user(
        self,
        name: str,
        description: str,
        extension: str | None = None,
        callrouting_only: bool = False,
    ) -> User:
        return await self._change(
            lambda s: s.add_user(name, description, extension, callrouting_only).to_user()
        )

    async def update_user(
        self, user_id: str, *, extension: str | None = None, description: str | None = None
    ) -> User:
        return await self._change(
            lambda s: s.update_user(user_id, extension, description).to_user()
        )

    async def delete_user(self, user_id: str) -> None:
        await self._change(lambda s: s.delete_user(user_id))

    async def create_group(self, name: str, description: str) -> Group:
        return await self._change(lambda s: s.add_group(name, description).to_group())

    async def add_group_members(self, group_id: str, user_ids: Sequence[str]) -> Group:
        return await self._change(lambda s: s.add_members(group_id, user_ids).to_group())

    async def remove_group_members(self, group_id: str, user_ids: Sequence[str]) -> Group:
        return await self._change(lambda s: s.remove_members(group_id, user_ids).to_group())

    async def next_free_extension(self) -> str:
        return (await self._answer(self._logged_in_host())).next_free_extension()

    async def set_agent_pin(self, user_id: str, pin: str) -> None:
        await self._change(lambda s: s.set_agent_pin(user_id, pin))

    def _logged_in_host(self) -> str:
        if self._host is None:
            raise PbxNotLoggedIn("Not logged in to the SwyxWare server")
        return self._host

    async def _change(self, change: Callable[[SimState], T]) -> T:
        host = self._logged_in_host()
        await self._answer(host)
        return await self._io(lambda: self._file.update(change), host)

    async def _answer(self, host: str) -> SimState:
        """The state as the server would answer now, after the injected faults."""
        state = await self._io(self._file.read, host)
        if state.faults.delay_seconds > 0:
            await asyncio.sleep(state.faults.delay_seconds)
            # Answer with the state as it is after the wait, as a slow server would.
            state = await self._io(self._file.read, host)
        if state.faults.unreachable:
            raise PbxUnreachable(f"The server '{host}' is not reachable")
        return state

    @staticmethod
    async def _io(call: Callable[[], T], host: str) -> T:
        # File I/O and the cross-process lock wait run off the event loop.
        try:
            return await asyncio.to_thread(call)
        except FileNotFoundError as exc:
            raise PbxUnreachable(f"The server '{host}' is not reachable") from exc
        except OSError as exc:
            raise PbxError(f"The simulator's state cannot be used: {exc}") from exc


class SimControl:
    """Sets up and steers the simulator from tests and the demo; safe across processes.

    Refusals are the same `PbxError`s the adapter raises.
    """

    def __init__(self, state_path: Path) -> None:
        self._file = StateFile(state_path)

    @property
    def state_path(self) -> Path:
        return self._file.path

    def create(
        self,
        host: str = DEFAULT_HOST,
        admin_user: str = DEFAULT_ADMIN_USER,
        admin_password: str = DEFAULT_ADMIN_PASSWORD,
        *,
        exist_ok: bool = False,
        first_extension: int = 200,
        last_extension: int = 899,
    ) -> bool:
        """Writes an empty PBX; returns False when one exists and `exist_ok` keeps it.

        Raises FileExistsError when the state file exists and not `exist_ok`.
        """
        if not 0 <= first_extension <= last_extension:
            raise ValueError("the extension range must be 0 <= first <= last")
        state = SimState(host, admin_user, admin_password, first_extension, last_extension)
        return self._file.create(state, exist_ok=exist_ok)

    def add_user(
        self,
        name: str,
        extension: str | None = None,
        state: UserState = UserState.LOGGED_ON,
        description: str = "",
        callrouting_only: bool = False,
    ) -> str:
        """Adds a user (``extension=None`` takes the next free one) and returns its id."""
        return self._file.update(
            lambda s: s.add_user(name, description, extension, callrouting_only, state).id
        )

    def add_group(self, name: str, member_ids: Sequence[str] = (), description: str = "") -> str:
        return self._file.update(lambda s: s.add_group(name, description, member_ids).id)

    def set_state(self, user: str, state: UserState) -> None:
        """Sets the state of the user named by id or by name."""

        def change(s: SimState) -> None:
            s.user_by_id_or_name(user).state = state

        self._file.update(change)

    def set_fault(
        self,
        unreachable: bool | None = None,
        refuse_login: bool | None = None,
        delay_seconds: float | None = None,
    ) -> SimFaults:
        """Changes the faults given (None keeps one) and returns them all."""
        if delay_seconds is not None and delay_seconds < 0:
            raise ValueError("delay_seconds must not be negative")

        def change(s: SimState) -> SimFaults:
            s.faults = replace(
                s.faults,
                unreachable=s.faults.unreachable if unreachable is None else unreachable,
                refuse_login=s.faults.refuse_login if refuse_login is None else refuse_login,
                delay_seconds=s.faults.delay_seconds if delay_seconds is None else delay_seconds,
            )
            return s.faults

        return self._file.update(change)

    def clear_faults(self) -> None:
        def change(s: SimState) -> None:
            s.faults = SimFaults()

        self._file.update(change)

    def faults(self) -> SimFaults:
        return self._file.read().faults

    def snapshot(self) -> Directory:
        return self._file.read().directory()

    def pin_of(self, user_id: str) -> str | None:
        return self._file.read().user(user_id).agent_pin

    def seed_demo(self, n_members: int = 20) -> Directory:
        """Adds a small German company in one step (all or nothing) and returns the directory.

        Groups "Empfang", "Technik", "Brandschutzhelfer" (`n_members` people) and
        "Ersthelfer"; extensions from the start of the range (200 by default).
        """

        def change(s: SimState) -> Directory:
            sim_demo.seed_demo(s, n_members)
            return s.directory()

        return self._file.update(change)
