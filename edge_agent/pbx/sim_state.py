"""The SwyxWare simulator's state: the model with SwyxWare's refusals, and its JSON file.

`SimPbx` (the adapter) and `SimControl` (tests and the demo) both change the
PBX only through `SimState`'s methods inside `StateFile.update`, so both refuse
the same things with the same words, and two processes never lose an update.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edge_agent import filelock
from edge_agent.error_text import describe
from edge_agent.files import write_atomic
from edge_agent.pbx.errors import PbxConflict, PbxError, PbxNotFound, PbxRefused
from edge_agent.pbx.port import Directory, Group, User, UserState

FORMAT = 1
FIRST_ID = 1001

T = TypeVar("T")

_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class SimFaults:
    """What the simulated PBX does wrong on purpose; all off by default."""

    unreachable: bool = False
    refuse_login: bool = False
    delay_seconds: float = 0.0


@dataclass
class SimUser:
    id: str
    name: str
    extension: str | None
    description: str = ""
    state: UserState = UserState.LOGGED_OFF
    callrouting_only: bool = False
    agent_pin: str | None = None

    def to_user(self) -> User:
        return User(
            id=self.id,
            name=self.name,
            extension=self.extension,
            description=self.description,
            state=self.state,
            callrouting_only=self.callrouting_only,
        )


@dataclass
class SimGroup:
    id: str
    name: str
    description: str = ""
    member_ids: list[str] = field(default_factory=list)

    def to_group(self) -> Group:
        return Group(self.id, self.name, self.description, tuple(self.member_ids))


def _same_name(a: str, b: str) -> bool:
    # SwyxWare compares user and group names without regard to case.
    return a.strip().casefold() == b.strip().casefold()


def _valid_name(name: str, kind: str) -> str:
    if not name.strip():
        raise PbxRefused(f"The {kind} name must not be empty")
    return name.strip()


def _valid_extension(extension: str) -> str:
    if not extension.isascii() or not extension.isdigit():
        raise PbxRefused(
            f"The internal number '{extension}' is not valid; it may contain digits only"
        )
    return extension


@dataclass
class SimState:
    host: str
    admin_user: str
    admin_password: str
    first_extension: int = 200
    last_extension: int = 899
    next_id: int = FIRST_ID
    users: list[SimUser] = field(default_factory=list)
    groups: list[SimGroup] = field(default_factory=list)
    faults: SimFaults = field(default_factory=SimFaults)

    def directory(self) -> Directory:
        return Directory(
            users=tuple(u.to_user() for u in self.users),
            groups=tuple(g.to_group() for g in self.groups),
        )

    def user(self, user_id: str) -> SimUser:
        for user in self.users:
            if user.id == user_id:
                return user
        raise PbxNotFound(f"The user with id {user_id} does not exist")

    def user_by_id_or_name(self, key: str) -> SimUser:
        for user in self.users:
            if user.id == key or _same_name(user.name, key):
                return user
        raise PbxNotFound(f"The user '{key}' does not exist")

    def group(self, group_id: str) -> SimGroup:
        for group in self.groups:
            if group.id == group_id:
                return group
        raise PbxNotFound(f"The group with id {group_id} does not exist")

    def add_user(
        self,
        name: str,
        description: str = "",
        extension: str | None = None,
        callrouting_only: bool = False,
        state: UserState = UserState.LOGGED_OFF,
    ) -> SimUser:
        name = _valid_name(name, "user")
        self._check_user_name_free(name)
        if extension is None:
            extension = self.next_free_extension()
        self._check_extension_free(_valid_extension(extension), owner_id=None)
        user = SimUser(self._new_id(), name, extension, description, state, callrouting_only)
        self.users.append(user)
        return user

    def update_user(
        self, user_id: str, extension: str | None = None, description: str | None = None
    ) -> SimUser:
        user = self.user(user_id)
        if extension is not None:
            self._check_extension_free(_valid_extension(extension), owner_id=user.id)
            user.extension = extension
        if description is not None:
            user.description = description
        return user

    def delete_user(self, user_id: str) -> None:
        user = self.user(user_id)
        self.users.remove(user)
        # SwyxWare drops a deleted user's memberships with it; no group keeps a dangling id.
        for group in self.groups:
            if user.id in group.member_ids:
                group.member_ids.remove(user.id)

    def add_group(
        self, name: str, description: str = "", member_ids: Iterable[str] = ()
    ) -> SimGroup:
        name = _valid_name(name, "group")
        for group in self.groups:
            if _same_name(group.name, name):
                raise PbxConflict(f"A group with the name '{group.name}' already exists")
        members = list(member_ids)
        for member_id in members:
            self.user(member_id)
        group = SimGroup(self._new_id(), name, description)
        self.groups.append(group)
        self.add_members(group.id, members)
        return group

    def add_members(self, group_id: str, user_ids: Iterable[str]) -> SimGroup:
        group = self.group(group_id)
        user_ids = list(user_ids)
        # Check all first: SwyxWare adds either every named member or none.
        for user_id in user_ids:
            self.user(user_id)
        for user_id in user_ids:
            if user_id not in group.member_ids:
                group.member_ids.append(user_id)
        return group

    def remove_members(self, group_id: str, user_ids: Iterable[str]) -> SimGroup:
        group = self.group(group_id)
        user_ids = list(user_ids)
        for user_id in user_ids:
            self.user(user_id)
        group.member_ids = [m for m in group.member_ids if m not in user_ids]
        return group

    def next_free_extension(self) -> str:
        used = {u.extension for u in self.users}
        for number in range(self.first_extension, self.last_extension + 1):
            if str(number) not in used:
                return str(number)
        raise PbxRefused(
            f"No internal number is free in the range {self.first_extension}-{self.last_extension}"
        )

    def set_agent_pin(self, user_id: str, pin: str) -> None:
        user = self.user(user_id)
        if not user.callrouting_only:
            raise PbxRefused(
                f"The user '{user.name}' is a licensed user; "
                "only call-routing-only users get an agent PIN"
            )
        if not pin.isascii() or not pin.isdigit():
            raise PbxRefused("The PIN may contain digits only")
        user.agent_pin = pin

    def _new_id(self) -> str:
        new_id = str(self.next_id)
        self.next_id += 1
        return new_id

    def _check_user_name_free(self, name: str) -> None:
        for user in self.users:
            if _same_name(user.name, name):
                raise PbxConflict(f"A user with the name '{user.name}' already exists")

    def _check_extension_free(self, extension: str, owner_id: str | None) -> None:
        for user in self.users:
            if user.extension == extension and user.id != owner_id:
                raise PbxConflict(
                    f"The internal number {extension} is already assigned to user '{user.name}'"
                )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "host": self.host,
            "admin": {"user": self.admin_user, "password": self.admin_password},
            "extensions": {"first": self.first_extension, "last": self.last_extension},
            "next_id": self.next_id,
            "faults": {
                "unreachable": self.faults.unreachable,
                "refuse_login": self.faults.refuse_login,
                "delay_seconds": self.faults.delay_seconds,
            },
            "users": [
                {
                    "id": u.id,
                    "name": u.name,
                    "extension": u.extension,
                    "description": u.description,
                    "state": u.state.name,
                    "callrouting_only": u.callrouting_only,
                    "agent_pin": u.agent_pin,
                }
                for u in self.users
            ],
            "groups": [
                {
                    "id": g.id,
                    "name": g.name,
                    "description": g.description,
                    "member_ids": g.member_ids,
                }
                for g in self.groups
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimState:
        """Raises KeyError, TypeError or ValueError when `data` is not a state."""
        if data["format"] != FORMAT:
            raise ValueError(f"unknown format {data['format']!r}")
        faults = data["faults"]
        return cls(
            host=str(data["host"]),
            admin_user=str(data["admin"]["user"]),
            admin_password=str(data["admin"]["password"]),
            first_extension=int(data["extensions"]["first"]),
            last_extension=int(data["extensions"]["last"]),
            next_id=int(data["next_id"]),
            faults=SimFaults(
                bool(faults["unreachable"]),
                bool(faults["refuse_login"]),
                float(faults["delay_seconds"]),
            ),
            users=[
                SimUser(
                    id=str(u["id"]),
                    name=str(u["name"]),
                    extension=None if u["extension"] is None else str(u["extension"]),
                    description=str(u["description"]),
                    state=UserState[u["state"]],
                    callrouting_only=bool(u["callrouting_only"]),
                    agent_pin=None if u["agent_pin"] is None else str(u["agent_pin"]),
                )
                for u in data["users"]
            ],
            groups=[
                SimGroup(
                    id=str(g["id"]),
                    name=str(g["name"]),
                    description=str(g["description"]),
                    member_ids=[str(m) for m in g["member_ids"]],
                )
                for g in data["groups"]
            ],
        )


class StateFile:
    """The JSON file that holds a `SimState`, shared safely between processes.

    Every write goes to a temporary file in the same folder that then replaces
    the state file, so a reader (locked or not) always sees a whole state, also
    after a crash mid-write (`edge_agent.files.write_atomic`). Read-modify-write
    cycles hold an exclusive lock on a sidecar lock file (`edge_agent.filelock`;
    the state file itself is replaced, so it cannot carry the lock).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def read(self) -> SimState:
        """Raises FileNotFoundError when there is no state, PbxError when it is damaged."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return SimState.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            # Fields only: a UnicodeDecodeError's repr holds the whole file, password and PINs.
            raise PbxError(
                f"The simulator's state file {self.path} is damaged: {describe(exc)}"
            ) from exc

    def update(self, change: Callable[[SimState], T]) -> T:
        """Applies `change` to the current state and saves it; nothing is saved if it raises."""
        with filelock.exclusive(self.lock_path):
            state = self.read()
            result = change(state)
            self._write(state)
            return result

    def create(self, state: SimState, *, exist_ok: bool) -> bool:
        """Writes a fresh state; returns False (keeping the file) when one exists and `exist_ok`."""
        with filelock.exclusive(self.lock_path):
            if self.path.exists():
                if exist_ok:
                    return False
                raise FileExistsError(f"The simulator's state file {self.path} exists already")
            self._write(state)
            return True

    def _write(self, state: SimState) -> None:
        # Readable by its owner only (write_atomic): it holds the admin password.
        data = json.dumps(state.to_json(), indent=2, ensure_ascii=False)
        # SwyxWare keeps UTF-16, where a name may hold a lone surrogate; UTF-8 cannot: the
        # file gets U+FFFD in its place, as the agent would send it (pbx/text.py).
        write_atomic(self.path, _SURROGATES.sub("\ufffd", data).encode())
