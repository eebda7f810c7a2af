"""A small German company for the demo, built on a `SimState`.

Deterministic, so screenshots and demo scripts show the same people every time.
"""

from __future__ import annotations

from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim_state import SimState, SimUser

# 23 and 24 names: coprime counts, so pairing the i-th of each (modulo the
# count) gives 23 * 24 different full names before any repeats.
FIRST_NAMES = (
    "Anna", "Bernd", "Carla", "Dieter", "Elke", "Frank", "Gabriele", "Heinz", "Ingrid",
    "Jürgen", "Katrin", "Lars", "Monika", "Norbert", "Petra", "Ralf", "Sabine", "Thomas",
    "Ursula", "Volker", "Waltraud", "Yvonne", "Klaus",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder",
    "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann",
)  # fmt: skip
MAX_USERS = len(FIRST_NAMES) * len(LAST_NAMES)

# The first users staff these departments; everybody else works in the cycle below.
FIXED_DEPARTMENTS = ("Empfang", "Empfang", "Technik", "Technik", "Technik", "Technik",
                     "Geschäftsleitung")  # fmt: skip
OTHER_DEPARTMENTS = ("Vertrieb", "Buchhaltung", "Einkauf", "Lager", "Produktion", "Personal")
# Mostly reachable, with every kind of "not right now" the broadcast has to cope with.
STATE_CYCLE = (
    UserState.LOGGED_ON, UserState.LOGGED_ON, UserState.SPEAKING_EXTERNAL, UserState.LOGGED_ON,
    UserState.AWAY, UserState.LOGGED_ON, UserState.LOGGED_OFF, UserState.LOGGED_ON,
    UserState.DO_NOT_DISTURB, UserState.SPEAKING_INTERNAL, UserState.LOGGED_ON, UserState.BUSY,
)  # fmt: skip
EXTRA_USERS = 10


def demo_name(index: int) -> str:
    return f"{FIRST_NAMES[index % len(FIRST_NAMES)]} {LAST_NAMES[index % len(LAST_NAMES)]}"


def seed_demo(state: SimState, n_members: int) -> None:
    """Adds the company's users and groups, with `n_members` fire safety helpers.

    Meant for a fresh state; a name already taken raises `PbxConflict`.
    """
    total = n_members + EXTRA_USERS
    if n_members < 0 or total > MAX_USERS:
        raise ValueError(f"n_members must be between 0 and {MAX_USERS - EXTRA_USERS}")
    users: list[SimUser] = []
    for index in range(total):
        if index < len(FIXED_DEPARTMENTS):
            department = FIXED_DEPARTMENTS[index]
        else:
            department = OTHER_DEPARTMENTS[index % len(OTHER_DEPARTMENTS)]
        users.append(
            state.add_user(
                demo_name(index),
                description=department,
                state=STATE_CYCLE[index % len(STATE_CYCLE)],
            )
        )

    def in_department(name: str) -> list[str]:
        return [u.id for u in users if u.description == name]

    state.add_group("Empfang", "Zentrale und Besucher", in_department("Empfang"))
    state.add_group("Technik", "Haustechnik und IT", in_department("Technik"))
    # Spread the helpers over the whole company, as fire safety rules ask for.
    helpers = [users[(k * total) // n_members].id for k in range(n_members)]
    state.add_group("Brandschutzhelfer", "Brandschutzhelfer nach ASR A2.2", helpers)
    state.add_group("Ersthelfer", "Ersthelfer", [u.id for u in users[3::4]])
