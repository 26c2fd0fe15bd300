"""How a user passes an option: the Makefile's variable when the tool runs under make, the
command-line flag otherwise. Messages name what the user actually typed."""
from __future__ import annotations

import os

# The documented interface is the Makefile (README "Offline tooling"); its variables map
# onto the tools' flags.
MAKE_VARIABLES = {
    "--stack": "STACK=<stack>",
    "--stacks": "A=<stack> B=<stack>",
    "--base": "BASE=<rev>",
    "--no-policies": "NO_POLICIES=1",
    "--outputs": "OUTPUTS=<file>",
    "--authorization-env": "AUTH_ENV=<variable>",
    "--out": "OUT=<path>",
    "--plan-out": "OUT=<file>",
    "--phase": "PHASE=<phase>",
}


def under_make() -> bool:
    # GNU make exports MAKELEVEL to every command it runs.
    return "MAKELEVEL" in os.environ


def option(flag: str, value: str = "") -> str:
    """`--outputs FILE` or `OUTPUTS=FILE`, whichever the user is typing."""
    if under_make() and flag in MAKE_VARIABLES:
        variable = MAKE_VARIABLES[flag]
        return variable.split("=")[0] + "=" + value if value and " " not in variable else variable
    return f"{flag} {value}".rstrip()
