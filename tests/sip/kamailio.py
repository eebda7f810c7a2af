"""Kamailio as the PBX of the SIP test bed (issue 16 point 4).

Debian's kamailio 5.6 (with kamailio-presence-modules; `bash ops/ensure-services.sh`
installs both), started per test on a free 127.0.0.1 port (UDP and TCP) with the
configuration in `kamailio/kamailio.cfg`. Its files are in `tmp_path/kamailio-<port>/`:
the configuration copy, `bed.cfg` (what this run adds: sockets, names), `db/` (the
db_text tables: `subscriber` the users, `htable` the agent numbers), `run/` (its
runtime folder and pid file) and `kamailio.log` (everything it logs).

    with Kamailio(tmp_path) as pbx:
        pbx.register("2001", member.uri)          # a SIPp/baresip member, third-party
        agent = Account("Rundruf", pbx.password("Rundruf"), pbx.domain, pbx.address)

What it does (README.md, "Kamailio"): registrar with digest auth from the user table,
calls to extensions go to the registered contacts, calls to agent numbers go to the
user owning the number with `Diversion` naming it, dialog state (RFC 4235) by
SUBSCRIBE `Event: dialog` from the presence modules.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from edge_agent.sip.ua import Account
from tests.processes import wait_until
from tests.sip.bed import HOST, _need, _Process, free_sip_port
from tests.sip.sip_register import RegisterClient, Reply, md5_hex, parse_reply
from tests.sip.tls_bed import Pem

CONFIG = Path(__file__).resolve().parent / "kamailio" / "kamailio.cfg"
DBTEXT_SCHEMAS = Path("/usr/share/kamailio/dbtext/kamailio")
# The tables the configuration's modules open (auth_db, htable, presence, pua).
TABLES = ("subscriber", "htable", "presentity", "active_watchers", "watchers", "pua", "xcap")

MEMBERS = tuple(str(2000 + n) for n in range(1, 21))  # extensions 2001 .. 2020
AGENT_USER = "Rundruf"  # the agent's registration
CALLER = "1000"  # an extension that triggers alarms
AGENT_NUMBERS = {"7000": AGENT_USER}  # agent number -> the user it rings


def need_kamailio() -> None:
    """Skips (fails with RUNDRUF_REQUIRE_SERVICES=1) without kamailio and its presence."""
    found = shutil.which("kamailio") is not None and (DBTEXT_SCHEMAS / "presentity").is_file()
    presence = any(Path("/usr/lib").glob("*/kamailio/modules/pua_dialoginfo.so"))
    _need(found and presence, "kamailio with kamailio-presence-modules")


def _dbtext(value: str) -> str:
    """A db_text field: ':' separates fields, so it and the escape are escaped."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n")


class Kamailio(_Process):
    """One Kamailio on 127.0.0.1:`port` (UDP and TCP), its users `users` (user ->
    password; default: MEMBERS, AGENT_USER and CALLER with random passwords) and agent
    numbers `agent_numbers` (number -> user). `challenge_calls` False lets calls and
    other requests through without credentials (a trunk); REGISTER and SUBSCRIBE are
    always challenged. `tls`: a server certificate (`tls_bed.Authority.issue`): SIP
    over TLS on `tls_port` too. `children`: worker processes per transport; one keeps
    the order of what a peer sends over UDP (with two, a 180 and the 200 right behind
    it can be forwarded the other way round, which a SIPp scenario takes as
    unexpected). `max_seconds`: it ends by itself after that long.
    The context manager returns once Kamailio answers OPTIONS.
    """

    # SIGTERM: Kamailio ends its children itself; after 10 s SIGKILL to its group.
    own_group = True
    stop_wait_s = 10.0

    def __init__(
        self,
        tmp_path: Path,
        *,
        users: Mapping[str, str] | None = None,
        agent_numbers: Mapping[str, str] | None = None,
        port: int | None = None,
        challenge_calls: bool = True,
        children: int = 1,
        tls: Pem | None = None,
        max_seconds: int = 1800,
    ) -> None:
        self.port = port or free_sip_port()
        self.host = HOST
        self.domain = HOST  # the users' domain, also the digest realm
        if users is None:
            names = [*MEMBERS, AGENT_USER, CALLER]
            users = {name: secrets.token_urlsafe(9) for name in names}
        self.users = dict(users)
        self.agent_numbers = dict(AGENT_NUMBERS if agent_numbers is None else agent_numbers)
        self.challenge_calls = challenge_calls
        self.children = children
        # SIP over TLS on its own port with this certificate (tls_bed.Authority.issue).
        self.tls = tls
        self.tls_port = free_sip_port() if tls is not None else None
        # It ends by itself after this long if a test leaks it (killed test run, say).
        self.max_seconds = max_seconds
        self.dir = tmp_path / f"kamailio-{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def address(self) -> tuple[str, int]:
        """Where requests go: the PBX as outbound proxy (an Account's `server`)."""
        return (self.host, self.port)

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    def aor(self, user: str) -> str:
        """A user's address of record, as the dialog state is asked for it."""
        return f"sip:{user}@{self.domain}"

    def password(self, user: str) -> str:
        return self.users[user]

    def agent_account(self, transport: str = "UDP") -> Account:
        """The agent's SIP account here: the user "Rundruf", Kamailio as outbound proxy
        (its TLS port for "TLS")."""
        return Account(AGENT_USER, self.users[AGENT_USER], self.domain, self.server(transport))

    def server(self, transport: str = "UDP") -> tuple[str, int]:
        """Where a client of `transport` sends: `address`, or (host, tls_port) for TLS."""
        if transport.upper() != "TLS":
            return self.address
        assert self.tls_port is not None, "Kamailio(tls=...) for TLS"
        return (self.host, self.tls_port)

    def agent_env(self, transport: str = "UDP") -> dict[str, str]:
        """The same for an agent process (`rundruf agent run`): its RUNDRUF_AGENT_SIP_*
        (for TLS without the CA file: RUNDRUF_AGENT_SIP_TLS_CA_FILE is the test's)."""
        return {
            "RUNDRUF_AGENT_DIALER": "sip",
            "RUNDRUF_AGENT_SIP_USER": AGENT_USER,
            "RUNDRUF_AGENT_SIP_PASSWORD": self.users[AGENT_USER],
            "RUNDRUF_AGENT_SIP_DOMAIN": self.domain,
            "RUNDRUF_AGENT_SIP_SERVER_HOST": self.host,
            "RUNDRUF_AGENT_SIP_SERVER_PORT": str(self.server(transport)[1]),
            "RUNDRUF_AGENT_SIP_TRANSPORT": transport,
            "RUNDRUF_AGENT_SIP_LOCAL_HOST": self.host,
        }

    @property
    def log_file(self) -> Path:
        return self.dir / "kamailio.log"

    def log(self, tail: int = 20000) -> str:
        """The end of Kamailio's log, for failure messages."""
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")[-tail:]

    # ---------------------------------------------------------------- registrar

    def register(
        self,
        user: str,
        contact: str,
        *,
        password: str | None = None,
        expires: int = 3600,
    ) -> Reply:
        """Registers `contact` (a member's SIP URI) for `user`, a third-party REGISTER
        from a socket of the test's; asserts a 200 unless `password` is given (then
        the answer is returned as it is: 403 for a wrong one)."""
        client = RegisterClient(self.address, self.domain)
        reply = client.register(user, password or self.users[user], contact, expires)
        if password is None:
            assert reply.status == 200, f"REGISTER {user}: {reply.raw}\n{self.log()}"
        return reply

    def bindings(self, user: str) -> list[str]:
        """The contact URIs registered for `user` now (a REGISTER without Contact)."""
        reply = RegisterClient(self.address, self.domain).register(
            user, self.users[user], contact=None
        )
        assert reply.status == 200, f"REGISTER query {user}: {reply.raw}"
        return [c.split("<", 1)[-1].split(">", 1)[0] for c in reply.contacts()]

    # --------------------------------------------------------------- dialog state

    def published(self, user: str) -> list[str]:
        """The dialog states pua_dialoginfo published for `user` so far, in order
        ("trying", "early", "confirmed", "terminated"), from Kamailio's log."""
        mark = f"dialog state {self.aor(user)} "
        return [
            line.split(mark, 1)[1].strip()
            for line in self.log(tail=10_000_000).splitlines()
            if mark in line
        ]

    def wait_published(self, user: str, state: str, within: float = 20) -> None:
        """Waits until the presence module has taken `state` for `user`: a SUBSCRIBE
        after this sees it (the PUBLISH goes through Kamailio's own UDP socket)."""
        wait_until(lambda: state in self.published(user), within, f"{user} published {state}")

    # ------------------------------------------------------------------ process

    def _bed_cfg(self) -> str:
        db = self.dir / "db"
        lines = [
            f'#!substdef "!BED_HOST!{self.host}!g"',
            f'#!substdef "!BED_PORT!{self.port}!g"',
            f'#!substdef "!BED_DOMAIN!{self.domain}!g"',
            f'#!define DBURL "text://{db}"',
            f'#!define PRESENCE_SERVER "sip:{self.host}:{self.port}"',
            f'#!define PUA_PROXY "sip:{self.host}:{self.port};transport=udp"',
            *(["#!define CHALLENGE_CALLS"] if self.challenge_calls else []),
            f"children={self.children}",
            f"tcp_children={self.children}",
            f"listen=udp:{self.host}:{self.port}",
            f"listen=tcp:{self.host}:{self.port}",
        ]
        if self.tls is not None:
            lines += [
                "#!define WITH_TLS",
                f'#!define TLS_CERT "{self.tls.cert}"',
                f'#!define TLS_KEY "{self.tls.key}"',
                "enable_tls=yes",
                f"listen=tls:{self.host}:{self.tls_port}",
            ]
        lines.append("")
        return "\n".join(lines)

    def _write_db(self) -> None:
        db = self.dir / "db"
        db.mkdir(parents=True, exist_ok=True)
        versions = (DBTEXT_SCHEMAS / "version").read_text().splitlines()
        wanted = [v for v in versions[1:] if v.split(":")[1] in TABLES]
        # `users`: a second htable table (the users' names), built like `htable`.
        htable = next(v for v in wanted if v.split(":")[1] == "htable")
        users = htable.replace(":htable:", ":users:")
        (db / "version").write_text("\n".join([versions[0], *wanted, users, ""]))
        for table in TABLES:
            shutil.copyfile(DBTEXT_SCHEMAS / table, db / table)
        shutil.copyfile(DBTEXT_SCHEMAS / "htable", db / "users")
        with (db / "subscriber").open("a") as subscribers:
            for n, (user, password) in enumerate(self.users.items(), 1):
                # id, username, domain, password, ha1, ha1b (db_text allows no empty
                # field; calculate_ha1 makes Kamailio use the password column)
                ha1 = md5_hex(f"{user}:{self.domain}:{password}")
                ha1b = md5_hex(f"{user}@{self.domain}:{self.domain}:{password}")
                fields = [str(n), user, self.domain, password, ha1, ha1b]
                subscribers.write(":".join(_dbtext(f) for f in fields) + "\n")
        # id, key_name, key_type (0 plain), value_type (0 string), key_value, expires
        for table, pairs in (
            ("htable", self.agent_numbers),
            ("users", {user: user for user in self.users}),
        ):
            with (db / table).open("a") as rows:
                for n, (key, value) in enumerate(pairs.items(), 1):
                    fields = [str(n), key, "0", "0", value, "0"]
                    rows.write(":".join(_dbtext(f) for f in fields) + "\n")

    def start(self) -> Self:
        if self.tls is not None:
            tls = any(Path("/usr/lib").glob("*/kamailio/modules/tls.so"))
            _need(tls, "kamailio-tls-modules")
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CONFIG, self.dir / "kamailio.cfg")
        (self.dir / "bed.cfg").write_text(self._bed_cfg())
        self._write_db()
        command = [
            # `timeout` passes our SIGTERM on to Kamailio, and ends a leaked one.
            *("timeout", "--kill-after=10", str(self.max_seconds)),
            "kamailio",
            *("-DD", "-E"),  # foreground (its children still fork), log to stderr
            *("-f", str(self.dir / "kamailio.cfg")),
            *("-Y", str(self.dir / "run"), "-P", str(self.dir / "run" / "kamailio.pid")),
            *("-w", str(self.dir)),
            *("-m", "64", "-M", "8"),  # shared and per-process memory, MB
        ]
        self._spawn(command, self.dir, self.log_file)
        wait_until(self._answers, 20, f"Kamailio on {self.host}:{self.port}")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"kamailio exited with {self.process.returncode}:\n{self.log()}")
        return self.options() == 200

    def options(self) -> int | None:
        """The status of an OPTIONS to the server itself (None: no answer in 0.5 s)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            sock.settimeout(0.5)
            port = sock.getsockname()[1]
            message = (
                f"OPTIONS {self.uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {HOST}:{port};branch=z9hG4bK{secrets.token_hex(8)}\r\n"
                f"From: <sip:probe@{HOST}>;tag={secrets.token_hex(4)}\r\n"
                f"To: <{self.uri}>\r\nCall-ID: {secrets.token_hex(8)}\r\nCSeq: 1 OPTIONS\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(message.encode(), self.address)
            try:
                return parse_reply(sock.recv(65535)).status
            except (TimeoutError, ConnectionRefusedError):
                return None
