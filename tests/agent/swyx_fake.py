"""A fake PowerShell runner that stands in for SwyxWare's `IpPbx` module.

It checks every script it receives (exactly one of the adapter's fixed scripts,
with the values only in the JSON parameter block), then does in Python what the
script does on SwyxWare and answers with the JSON the script would print. Its
directory starts from `tests/fixtures/swyx/seed_directory.json` (constructed, see
the README there). It is a model of SwyxWare, not SwyxWare: it proves the
adapter's plumbing, not the cmdlets.

Where a script hands a cmdlet a user or group by its name (`-UserName`,
`-GroupName`) instead of the entry it looked up, the fake acts on every entry that
name matches read as a pattern (`*`, `?`, `[…]`, any case), as such a cmdlet may:
so a script that names a user after looking it up by id hits the wrong users here
(`_by_name`).
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.pbx.swyx_runner import PowerShellRunner, RunnerError
from edge_agent.pbx.swyx_scripts import script_name

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "swyx"
SERVER = "swyx01"
ADMIN, PASSWORD = r"FIRMA\swyxadmin", "geheim"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class Refusal(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass
class Call:
    script: str
    name: str
    params: dict[str, Any]


@dataclass
class FakeSwyx(PowerShellRunner):
    users: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # agent files, path → text
    calls: list[Call] = field(default_factory=list)
    unreachable: bool = False
    answer: str | None = None  # a canned answer for the next script
    next_id: int = 100
    user: str | None = None
    password: str | None = None
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # user id, login, password
    # False: stands in for local powershell.exe, which runs as `identity` and takes no login.
    uses_login: bool = True
    identity: str = "FIRMA\\svc-rundruf"
    # True: the group's description cannot be stored (Update-IpPbxGroup fails).
    group_description_fails: bool = False
    script: str = ""  # the script being run

    @classmethod
    def seeded(cls) -> FakeSwyx:
        seed = fixture("seed_directory.json")
        return cls(users=seed["Users"], groups=seed["Groups"])

    def set_login(self, host: str, user: str, password: str) -> None:
        self.user, self.password = user, password

    async def run(self, script: str, params_json: str, *, seconds: float) -> str:
        name = script_name(script)
        assert name is not None, "the adapter sent a script that is not one of its fixed scripts"
        params = json.loads(params_json)
        assert isinstance(params, dict)
        self.calls.append(Call(script, name, params))
        self.script = script
        if self.unreachable:
            raise RunnerError("WinRM cannot complete the operation: host not reachable")
        if self.answer is not None:
            answer, self.answer = self.answer, None
            return answer
        try:
            self._connect(params)
            data = getattr(self, "_" + name)(params)
        except Refusal as refusal:
            return json.dumps({"ok": False, "kind": refusal.kind, "message": refusal.message})
        return json.dumps({"ok": True, "data": data}, ensure_ascii=False)

    # --- what each script does on SwyxWare ---------------------------------

    def _connect(self, p: dict[str, Any]) -> None:
        if p["server"] != SERVER:
            raise Refusal("connect", "Connect-IpPbx failed: The RPC server is unavailable.")
        if self.uses_login and (self.user, self.password) != (ADMIN, PASSWORD):
            raise Refusal("connect", "Connect-IpPbx failed: Access is denied.")

    def _login(self, p: dict[str, Any]) -> Any:
        return {"Identity": self.user if self.uses_login else self.identity}

    def _directory(self, p: dict[str, Any]) -> Any:
        return {"Users": [self._project(u) for u in self.users], "Groups": self.groups}

    def _next_free_number(self, p: dict[str, Any]) -> Any:
        used = {n for u in self.users for n in u["InternalNumbers"]}
        number = int(p["from"])
        while str(number) in used:
            number += 1
        return str(number)

    def _create_user(self, p: dict[str, Any]) -> Any:
        name = p["name"].strip()
        for u in self.users:
            if u["Name"].strip().casefold() == name.casefold():
                raise Refusal("conflict", f"A user with the name '{u['Name']}' already exists")
        number = p["number"] or self._next_free_number(p)
        self._number_free(number, "")
        user = {"UserID": self._id(), "Name": name, "Comment": p["comment"]}
        user["InternalNumbers"] = []
        self.users.append(user)
        # The number goes to the user the script finds again after adding it.
        for target in self._by_name("Get-IpPbxUser", user):
            target["InternalNumbers"] = [*target["InternalNumbers"], number]
        return self._project(user)

    def _update_user(self, p: dict[str, Any]) -> Any:
        user = self._user(p["id"])
        agent = self._is_agent(p, user)
        if p["comment"] is not None:
            user["Comment"] = (p["comment"] + (" " + p["tag"] if agent else "")).lstrip()
        if p["number"] is not None and p["number"] not in self._numbers(user):
            self._number_free(p["number"], user["UserID"])
            for target in self._by_name("Get-IpPbxInternalNumber", user):
                target["InternalNumbers"] = []
            user["InternalNumbers"] = [p["number"]]
            if agent:
                self._write_agent_file(p, user, None)
        return self._project(user)

    def _delete_user(self, p: dict[str, Any]) -> Any:
        user = self._user(p["id"])
        self.users.remove(user)
        for group in self.groups:
            group["Members"] = [m for m in group["Members"] if m != user["UserID"]]
        self.files.pop(self._agent_path(p, user), None)
        return None

    def _create_group(self, p: dict[str, Any]) -> Any:
        name = p["name"].strip()
        for g in self.groups:
            if g["Name"].strip().casefold() == name.casefold():
                raise Refusal("conflict", f"A group with the name '{g['Name']}' already exists")
        group = {"GroupID": self._id(), "Name": name, "Description": "", "Members": []}
        self.groups.append(group)
        found = self._by_name("Get-IpPbxGroup", group, self.groups)[0]  # found again
        if not p["comment"]:
            return found
        if self.group_description_fails:
            return found | {"DescriptionError": "The term 'Update-IpPbxGroup' is not recognized"}
        assert "Update-IpPbxGroup -GroupEntry $group" in self.script
        found["Description"] = p["comment"]
        return found

    def _add_members(self, p: dict[str, Any]) -> Any:
        group = self._group(p["group"])
        users = [self._user(i) for i in p["users"]]
        for user in users:
            if user["UserID"] not in group["Members"]:
                group["Members"].append(user["UserID"])
        return group

    def _remove_members(self, p: dict[str, Any]) -> Any:
        group = self._group(p["group"])
        ids = [self._user(i)["UserID"] for i in p["users"]]
        group["Members"] = [m for m in group["Members"] if m not in ids]
        return group

    def _set_agent_pin(self, p: dict[str, Any]) -> Any:
        user = self._user(p["id"])
        if not self._is_agent(p, user):
            raise Refusal(
                "refused",
                f"The user '{user['Name']}' is a licensed user; "
                "only call-routing-only users get an agent PIN",
            )
        self._write_agent_file(p, user, p["pin"])
        return None

    def _set_user_login(self, p: dict[str, Any]) -> Any:
        for user in self._by_name("Set-IpPbxUserLogin", self._user(p["id"])):
            self.logins.append((user["UserID"], p["login"], p["password"]))
        return None

    # --- helpers -------------------------------------------------------------

    def _id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def _user(self, user_id: str) -> dict[str, Any]:
        for user in self.users:
            if user["UserID"] == str(user_id):
                return user
        raise Refusal("not_found", f"The user with id {user_id} does not exist")

    def _group(self, group_id: str) -> dict[str, Any]:
        for group in self.groups:
            if group["GroupID"] == str(group_id):
                return group
        raise Refusal("not_found", f"The group with id {group_id} does not exist")

    def _by_name(
        self,
        cmdlet: str,
        entry: dict[str, Any],
        entries: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """The entries `cmdlet` acts on in the running script: `entry` itself when the
        script hands it the entry, else every entry its name matches as a pattern."""
        if not re.search(rf"{cmdlet}\b[^\n|]*-(User|Group)Name\b", self.script):
            return [entry]
        pattern = entry["Name"].casefold()
        found = [
            e
            for e in (self.users if entries is None else entries)
            if fnmatch.fnmatchcase(e["Name"].casefold(), pattern)
        ]
        return found or [entry]

    def _numbers(self, user: dict[str, Any]) -> list[str]:
        """The numbers the script reads for `user`."""
        matched = self._by_name("Get-IpPbxInternalNumber", user)
        return [n for u in matched for n in u["InternalNumbers"]]

    def _project(self, user: dict[str, Any]) -> dict[str, Any]:
        return user | {"InternalNumbers": self._numbers(user)}

    def _number_free(self, number: str, owner: str) -> None:
        for user in self.users:
            if user["UserID"] != owner and number in user["InternalNumbers"]:
                raise Refusal(
                    "conflict",
                    f"The internal number {number} is already assigned to user '{user['Name']}'",
                )

    @staticmethod
    def _is_agent(p: dict[str, Any], user: dict[str, Any]) -> bool:
        return user["Comment"] == p["tag"] or user["Comment"].endswith(" " + p["tag"])

    @staticmethod
    def _agent_path(p: dict[str, Any], user: dict[str, Any]) -> str:
        return p["agentDir"] + "\\rundruf_agent_" + user["UserID"] + ".txt"

    def _write_agent_file(self, p: dict[str, Any], user: dict[str, Any], pin: str | None) -> None:
        path = self._agent_path(p, user)
        if pin is None:
            old = self.files.get(path)
            if old is None:
                return
            pin = old.splitlines()[0].removeprefix("pin=")
        number = (self._numbers(user) or [""])[0]
        name = user["Name"].encode("utf-8").hex()
        self.files[path] = f"pin={pin}\nnumber={number}\nname={name}\n"
