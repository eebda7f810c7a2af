"""The input guard's rules per field (schema/input_guard.py), by schema coordinate:
`Type.field(argument:)` for an argument, `InputType.field` for a field of an input object.

Each limit here is the one the service or the column holds, taken from where that is
named, so that an over-long text is refused naming its field, never cut silently or
refused by the database as "Unexpected error". tests/test_input_guard.py checks that
every coordinate exists. See docs/decisions/input-guard.md.
"""

from __future__ import annotations

from api.services import agents, broadcast_reports, broadcast_stop, directory, trigger_source

# Generous: no name, number or message of this API comes near it; a page of text does.
DEFAULT_MAX_LENGTH = 4000

MAX_LENGTH: dict[str, int] = {
    # The settings allow up to 20,000 characters (tts_max_chars); the service applies
    # the configured limit.
    "Mutation.synthesizeAnnouncement(text:)": 20_000,
    "Mutation.createGroup(name:)": directory.GROUP_NAME_MAX,
    "Mutation.createGroup(description:)": directory.GROUP_DESCRIPTION_MAX,
    "Mutation.registerInstallation(hostname:)": agents.HOSTNAME_MAX,
    "Mutation.registerInstallation(agentVersion:)": agents.AGENT_VERSION_MAX,
    "HealthInput.agentVersion": agents.AGENT_VERSION_MAX,
    "BroadcastReportInput.broadcastId": broadcast_reports.BROADCAST_ID_MAX,
    **{f"BroadcastReportInput.{n}": m for _, n, m in broadcast_reports.REPORT_TEXTS},
    **{f"CallEventInput.{n}": m for _, n, m in broadcast_reports.EVENT_TEXTS},
    "BroadcastStopInput.via": trigger_source.NAME_MAX,
    "BroadcastStopInput.by": broadcast_stop.BY_MAX,
    "BroadcastStopInput.reason": broadcast_stop.REASON_MAX,
    "Mutation.cancelBroadcast(reason:)": broadcast_stop.REASON_MAX,
}

# Where tab and line breaks are allowed: texts written in a text area.
MULTI_LINE: frozenset[str] = frozenset({"Mutation.synthesizeAnnouncement(text:)"})

# Texts the service cleans and cuts instead of the guard refusing them: what an agent
# reports from the PBX (a directory snapshot, PowerShell's words about a failure) is
# stored cleaned and cut, never refused as a whole, so that an agent older than its own
# cleaning still gets its commands done and its calls into the history
# (docs/decisions/poison-results.md).
CLEANED: frozenset[str] = frozenset(
    {
        "Mutation.completeCommand(result:)",
        "Mutation.completeCommand(error:)",
        "CallEventInput.detail",
    }
)

# Texts from the PBX in an agent's report whose characters the service cleans (as the
# mirror does, edge_agent/pbx/text.py) but whose length the guard refuses: the agent has
# always cut them to their columns, and a cut name could name someone else.
PBX_TEXT: frozenset[str] = frozenset(
    {
        "CallEventInput.memberName",
        "BroadcastReportInput.triggerCallerName",
        "BroadcastReportInput.note",
        "BroadcastStopInput.by",  # a caller's number as the PBX gave it, or a user's name
    }
)
