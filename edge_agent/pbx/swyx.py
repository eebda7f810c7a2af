"""The `Pbx` port over SwyxWare's PowerShell module `IpPbx`.

Every operation runs one fixed script from `swyx_scripts` through a
`PowerShellRunner` (local `powershell.exe` or PowerShell Remoting), with the
values as a JSON parameter block, and reads the one JSON document the script
prints. Refusals and failures become the `PbxError`s of `errors.py`.

SwyxWare has no "call-routing-only" flag we could find in public sources; such
users (the broadcast agents) carry `AGENT_TAG` at the end of their description,
which this adapter hides. They get no login, so they do not take a user license
(SwyxWare licenses users that log in, docs/swyx.md). Member states come from a
`StateReader` (COM `PBXConfig` on Windows, `swyx_com.py`, on its own thread);
without one every user is `UNAVAILABLE` (state not known), and test mode asks the
call-routing script's states or the dialer instead. PowerShell and COM never run on
the event loop's thread, which also paces the calls' audio.

Nothing here has run against a real SwyxWare: see docs/swyx.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from edge_agent.error_text import redact
from edge_agent.pbx.errors import (
    PbxConflict,
    PbxError,
    PbxLoginRefused,
    PbxNotFound,
    PbxNotLoggedIn,
    PbxRefused,
    PbxUnreachable,
)
from edge_agent.pbx.port import Directory, Group, Pbx, User, UserState
from edge_agent.pbx.swyx_runner import PowerShellRunner, RunnerError, same_account
from edge_agent.pbx.swyx_scripts import SCRIPTS

log = logging.getLogger(__name__)

T = TypeVar("T")

AGENT_TAG = "[Rundruf-Callrouting]"
DEFAULT_AGENT_DIR = r"C:\ProgramData\Rundruf\agents"
# Words in Connect-IpPbx's failure that mean "who you are" rather than "where it is".
_LOGIN_WORDS = ("access", "denied", "unauthori", "credential", "logon", "login", "password")
# Script parameters that are secrets: PowerShell's error records may repeat them.
_SECRET_PARAMS = ("pin", "password")
# PowerShell's words in an error, cut only after the secrets are hidden in them.
MESSAGE_MAX = 500

# Reads the states of the groups' members off the event loop (swyx_com.ComStateReader).
StateReader = Callable[[Sequence[Group]], Awaitable[Mapping[str, UserState]]]


class SwyxPbx(Pbx):
    adapter = "swyx"

    def __init__(
        self,
        runner: PowerShellRunner,
        *,
        agent_dir: str = DEFAULT_AGENT_DIR,
        first_extension: int = 200,
        timeout_seconds: float = 60.0,
        states: StateReader | None = None,
        dialer_login: tuple[str, str] | None = None,
        password_check: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.runner = runner
        self.agent_dir = agent_dir
        self.first_extension = first_extension
        self.timeout = timeout_seconds
        self.states = states
        # The SIP dialer's user name and password (RUNDRUF_AGENT_SIP_USER / _PASSWORD).
        self.dialer_login = dialer_login
        # Local PowerShell runs as the service account, so the website's password is not
        # what connects: where possible it is checked with Windows (LogonUser) instead.
        self.password_check = password_check
        self._server: str | None = None
        # The login's password, hidden from every error this adapter raises (with the
        # dialer's and the parameters in `_SECRET_PARAMS`).
        self._password: str | None = None

    async def login(self, host: str, admin_user: str, password: str) -> None:
        self._server = None  # a new login ends the last one, whatever its outcome
        self._password = password
        self.runner.set_login(host, admin_user, password)
        answer = await self._run("login", server=host)
        identity = str((answer or {}).get("Identity") or "")
        if not self.runner.uses_login:
            self._check_local_login(identity, admin_user, password)
            if self.password_check is not None and not await asyncio.to_thread(
                self.password_check, admin_user, password
            ):
                raise PbxLoginRefused(
                    f"Login failed for '{admin_user}': wrong user name or password"
                )
        self._server = host
        log.info("logged in to SwyxWare %s as %s", host, identity or admin_user)

    @staticmethod
    def _check_local_login(identity: str, admin_user: str, password: str) -> None:
        if not same_account(identity, admin_user):
            raise PbxLoginRefused(
                f"The agent works on this server as '{identity}': enter that account "
                f"(not '{admin_user}'), or let it use PowerShell Remoting "
                "(RUNDRUF_AGENT_SWYX_TRANSPORT=winrm)"
            )
        if not password:
            raise PbxLoginRefused(f"Login failed for '{admin_user}': no password")

    async def reachable(self) -> bool:
        if self._server is None:
            return False
        try:
            await self._run("next_free_number", from_=self.first_extension)
        except PbxError:
            return False
        return True

    async def directory(self) -> Directory:
        data = await self._run("directory")
        users, users_skipped = _each(_user, _items(data.get("Users")))
        groups, groups_skipped = _each(_group, _items(data.get("Groups")))
        states = await self._read_states(groups)
        if states:
            users = [_with_state(u, states.get(u.id)) for u in users]
        # Partial: an entry left out may still be on the PBX (not deleted, just unread).
        return Directory(tuple(users), tuple(groups), partial=users_skipped or groups_skipped)

    async def create_user(
        self,
        name: str,
        description: str,
        extension: str | None = None,
        callrouting_only: bool = False,
    ) -> User:
        if not name.strip():
            raise PbxRefused("The user name must not be empty")
        if extension is not None:
            _check_extension(extension)
        _check_description(description)
        comment = f"{description} {AGENT_TAG}".lstrip() if callrouting_only else description
        data = await self._run(
            "create_user", name=name, comment=comment, number=extension, from_=self.first_extension
        )
        return _user(data)

    async def update_user(
        self, user_id: str, *, extension: str | None = None, description: str | None = None
    ) -> User:
        if extension is not None:
            _check_extension(extension)
        if description is not None:
            _check_description(description)
        data = await self._run("update_user", id=user_id, number=extension, comment=description)
        return _user(data)

    async def delete_user(self, user_id: str) -> None:
        await self._run("delete_user", id=user_id)

    async def create_group(self, name: str, description: str) -> Group:
        if not name.strip():
            raise PbxRefused("The group name must not be empty")
        data = await self._run("create_group", name=name, comment=description)
        if isinstance(data, dict) and data.get("DescriptionError"):
            # The group exists; only its description is missing (docs/swyx.md, Update-IpPbxGroup).
            log.warning(
                "group %r created without its description: %s", name, data["DescriptionError"]
            )
        return _group(data)

    async def add_group_members(self, group_id: str, user_ids: Sequence[str]) -> Group:
        return _group(await self._run("add_members", group=group_id, users=list(user_ids)))

    async def remove_group_members(self, group_id: str, user_ids: Sequence[str]) -> Group:
        return _group(await self._run("remove_members", group=group_id, users=list(user_ids)))

    async def next_free_extension(self) -> str:
        number = await self._run("next_free_number", from_=self.first_extension)
        if not isinstance(number, str) or not number.isdigit():
            raise PbxError(f"SwyxWare named no free internal number ({number!r})")
        return number

    async def set_agent_pin(self, user_id: str, pin: str) -> None:
        if not pin.isascii() or not pin.isdigit():
            raise PbxRefused("The PIN may contain digits only")
        await self._run("set_agent_pin", id=user_id, pin=pin)

    async def enable_user_login(self, user_id: str, login_name: str, password: str) -> None:
        await self._run("set_user_login", id=user_id, login=login_name, password=password)

    async def prepare_dialer_login(self, user: User) -> None:
        """Gives the service user "Rundruf" the dialer's login: SwyxWare takes the user's
        password for SIP authentication unless the SIP tab sets another (docs/swyx.md).
        "Allow SIP login" itself has no known cmdlet and is ticked by hand."""
        if self.dialer_login is None:
            log.warning(
                "no RUNDRUF_AGENT_SIP_PASSWORD: the SIP login of %r is left as it is", user.name
            )
            return
        login_name, password = self.dialer_login
        await self.enable_user_login(user.id, login_name, password)

    async def _read_states(self, groups: Sequence[Group]) -> Mapping[str, UserState]:
        if self.states is None:
            return {}
        try:
            return await self.states(groups)
        except Exception as exc:  # states only help test mode; the directory still counts
            log.warning("SwyxWare user states unavailable: %s", exc)
            return {}

    async def _run(self, script_name: str, /, **params: Any) -> Any:
        """Runs script `script_name`; returns its `data` or raises the matching `PbxError`."""
        server = params.pop("server", None) or self._server
        if server is None:
            raise PbxNotLoggedIn("Not logged in to the SwyxWare server")
        block = {key.rstrip("_"): value for key, value in params.items()}
        block.update(server=server, tag=AGENT_TAG, agentDir=self.agent_dir)
        hidden = [self._password, *(params.get(key) for key in _SECRET_PARAMS)]
        if self.dialer_login is not None:
            hidden.append(self.dialer_login[1])
        try:
            text = await self.runner.run(
                SCRIPTS[script_name], json.dumps(block, ensure_ascii=True), seconds=self.timeout
            )
        except RunnerError as exc:
            # Not chained: the runner's own message may still hold what is hidden here.
            message = redact(exc.message, hidden, MESSAGE_MAX)
            if exc.unreachable:
                raise PbxUnreachable(f"The server '{server}' is not reachable: {message}") from None
            raise PbxError(f"PowerShell failed on '{server}': {message}") from None
        return parse_answer(text, server, hidden)


def parse_answer(text: str, server: str, hidden: Sequence[object] = ()) -> Any:
    """The `data` of a script's answer; raises the `PbxError` its refusal stands for,
    with the `hidden` values (passwords, the PIN) replaced by ``***``."""
    answer = None
    # The answer is the last line that is our JSON; a host may print warnings before it.
    for line in reversed(text.strip().splitlines()):
        try:
            candidate = json.loads(line)
        except ValueError:
            continue
        if isinstance(candidate, dict) and "ok" in candidate:
            answer = candidate
            break
    if answer is None:
        shown = redact(text, hidden, 200)
        raise PbxError(f"SwyxWare's PowerShell gave no JSON answer: {shown!r}")
    if answer["ok"] is True:
        return answer.get("data")
    kind = str(answer.get("kind"))
    message = redact(str(answer.get("message") or "no reason given"), hidden, MESSAGE_MAX)
    if kind == "connect" or kind == "login":
        if kind == "login" or any(w in message.casefold() for w in _LOGIN_WORDS):
            raise PbxLoginRefused(f"The server '{server}' refused the login: {message}")
        raise PbxUnreachable(f"The server '{server}' is not reachable: {message}")
    errors: dict[str, type[PbxError]] = {
        "not_found": PbxNotFound,
        "conflict": PbxConflict,
        "refused": PbxRefused,
    }
    if kind == "module":
        raise PbxError(f"{message} (is SwyxWare's administration installed on '{server}'?)")
    raise errors.get(kind, PbxRefused)(message)


def _items(value: Any) -> list[Any]:
    """A JSON array, also in the {"value": [...], "Count": n} form of PowerShell 5.1."""
    if isinstance(value, dict) and isinstance(value.get("value"), list):
        value = value["value"]
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _each(read: Callable[[Any], T], items: list[Any]) -> tuple[list[T], bool]:
    """Every entry that can be read: one broken entry leaves out itself, not the directory;
    and whether one was left out (the directory is then partial)."""
    entries = []
    for raw in items:
        try:
            entries.append(read(raw))
        except PbxError as exc:
            log.warning("skipped an entry of the directory: %s", exc.message)
    return entries, len(entries) != len(items)


def _shape(raw: Any) -> str:
    """What an unusable entry is, from its field names: never its values (the text
    leaves the agent; issue 14, point 5)."""
    if isinstance(raw, dict):
        names = ", ".join(str(k)[:40] for k in list(raw)[:20])
        return f"an object with the fields {names}" if names else "an empty object"
    return f"a value of type {type(raw).__name__}"


def _user(raw: Any) -> User:
    if not isinstance(raw, dict) or not raw.get("UserID"):
        raise PbxError(f"SwyxWare answered with no user: {_shape(raw)}")
    comment = str(raw.get("Comment") or "")
    agent = comment == AGENT_TAG or comment.endswith(" " + AGENT_TAG)
    if agent:
        comment = comment.removesuffix(AGENT_TAG).removesuffix(" ")
    numbers = [str(n) for n in _items(raw.get("InternalNumbers"))]
    return User(
        id=str(raw["UserID"]),
        name=str(raw.get("Name") or ""),
        extension=numbers[0] if numbers else None,
        description=comment,
        state=UserState.UNAVAILABLE,
        callrouting_only=agent,
    )


def _group(raw: Any) -> Group:
    if not isinstance(raw, dict) or not raw.get("GroupID"):
        raise PbxError(f"SwyxWare answered with no group: {_shape(raw)}")
    return Group(
        id=str(raw["GroupID"]),
        name=str(raw.get("Name") or ""),
        description=str(raw.get("Description") or ""),
        member_ids=tuple(str(m) for m in _items(raw.get("Members"))),
    )


def _with_state(user: User, state: UserState | None) -> User:
    return user if state is None else replace(user, state=state)


def _check_description(description: str) -> None:
    """The agent tag marks broadcast agents: typed into a description it would turn a
    licensed user into one (and give it an agent file)."""
    if AGENT_TAG in description:
        raise PbxRefused(f"The description must not contain {AGENT_TAG}")


def _check_extension(extension: str) -> None:
    if not extension.isascii() or not extension.isdigit():
        raise PbxRefused(
            f"The internal number '{extension}' is not valid; it may contain digits only"
        )
