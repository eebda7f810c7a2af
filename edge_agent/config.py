"""The enrolment: which server, and the installation token (readable by the service only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_agent.errors import NotEnrolled
from edge_agent.files import read_json, write_json

# How to mend a missing or broken enrolment: on the Windows host through the service host,
# which enrols with the service's own settings and folder (edge_agent/windows_service.py).
ENROL_COMMAND = (
    "`rundruf-service agent enroll --server URL --license KEY` "
    "(`rundruf-agent enroll` where the agent runs without the Windows service)"
)


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
    """The enrolment in `path`; NotEnrolled when there is none or it cannot be read
    (not JSON, a field missing), with the reason and the command that mends it."""
    try:
        data = read_json(path, None)
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        problem = f"the enrolment in {path} cannot be read ({exc})"
    else:
        fields = ("server", "installationId", "token")
        if isinstance(data, dict) and all(isinstance(data.get(k), str) and data[k] for k in fields):
            return Enrolment(data["server"], data["installationId"], data["token"])
        problem = f"no enrolment in {path}" if data is None else f"{path} is no enrolment"
    raise NotEnrolled(f"{problem}; enrol with {ENROL_COMMAND}")
