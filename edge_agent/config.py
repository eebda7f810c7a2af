"""The enrolment: which server, and the installation token (readable by the service only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_agent.errors import NotEnrolled
from edge_agent.files import read_json, write_json


@dataclass(frozen=True)
class Enrolment:
    server: str  # https://rundruf.example.com (the agent adds /graphql)
    installation_id: str
    token: str

    @property
    def graphql_http(self) -> str:
        return self.server.rstrip("/") + "/graphql"

    @property
    def graphql_ws(self) -> str:
        base = self.server.rstrip("/")
        scheme = "wss" if base.startswith("https://") else "ws"
        return scheme + "://" + base.split("://", 1)[1] + "/graphql"


def save(path: Path, enrolment: Enrolment) -> None:
    write_json(
        path,
        {
            "server": enrolment.server,
            "installationId": enrolment.installation_id,
            "token": enrolment.token,
        },
    )


def load(path: Path) -> Enrolment:
    data = read_json(path, None)
    if not isinstance(data, dict) or not data.get("token"):
        raise NotEnrolled(f"no enrolment in {path}: run `rundruf agent enroll` first")
    return Enrolment(
        server=str(data["server"]),
        installation_id=str(data["installationId"]),
        token=str(data["token"]),
    )
