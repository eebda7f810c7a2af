"""The agent's exit codes: `rundruf-agent run` ends with one of them, and the Windows
service host (edge_agent/windows_service.py) decides by them whether a restart can help.

The job service has codes of its own (swyx_jobservice/exit_codes.py): the service host
reads each service's code against that service's table, never the other's.
"""

from __future__ import annotations

OK = 0
# Anything a restart may mend (a crash, an unexpected error): the service starts it again.
FAILED = 1
# RUNDRUF_AGENT_PBX/DIALER missing or a setting invalid: nothing was started.
SETTINGS = 2
# The central service refused the enrolment (a revoked licence, say): enrol again.
REFUSED = 3
# No enrolment, or one that cannot be read: enrol first.
NOT_ENROLLED = 4

# What the service host writes to its log when the agent ends so; it stops the service.
PERMANENT: dict[int, str] = {
    SETTINGS: "the settings are incomplete or wrong",
    REFUSED: "the server refused the enrolment: enrol again (rundruf-service agent enroll)",
    NOT_ENROLLED: "not enrolled: rundruf-service agent enroll",
}
