"""The job service's exit codes: `rundruf-jobservice` ends with one of them, and the
Windows service host (edge_agent/windows_service.py) decides by them whether a restart
can help. They are the job service's own; the agent's are in edge_agent/exit_codes.py.
"""

from __future__ import annotations

OK = 0
# A crash, or serving could not start (the port is taken, say): the service host starts
# it again later, as the port may be free by then.
FAILED = 1
# The settings or the data folder cannot start the service: nothing was started.
SETTINGS = 2

# What the service host writes to its log when the job service ends so; it stops the service.
PERMANENT: dict[int, str] = {SETTINGS: "the settings or the data folder are wrong"}
