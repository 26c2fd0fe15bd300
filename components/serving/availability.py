"""Which regions and zones offer an instance type, from a dated snapshot, offline.

The snapshot (offerings.json beside this file) is written by `make offerings` from EC2's
DescribeInstanceTypeOfferings; it lets the preview refuse a GPU a region does not sell
before anything registers. It says what AWS offered on the day it was taken, not what
your account can launch today: `make preflight` asks your account.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Optional

SNAPSHOT_PATH = Path(__file__).resolve().parent / "offerings.json"


@functools.lru_cache(maxsize=1)
def snapshot() -> dict:
    return json.loads(SNAPSHOT_PATH.read_text())


def zones_offering(region: str, instance_type: str) -> Optional[list[str]]:
    """Zones of `region` that offered `instance_type` on the snapshot's day; None when the
    snapshot does not cover the region or the type (no verdict)."""
    data = snapshot()
    if region not in data["regions"] or instance_type not in data["instance_types"]:
        return None
    return data["regions"][region].get(instance_type, [])


def offering_problem(region: str, instance_type: str, *, az_count: int,
                     zones: tuple[str, ...] = ()) -> Optional[str]:
    """Why `instance_type` cannot serve from `region` as the network is laid out, or None."""
    offered = zones_offering(region, instance_type)
    if offered is None:
        return None
    when = f"on {snapshot()['generated']} ({snapshot()['source']})"
    if not offered:
        elsewhere = sorted(r for r, types in snapshot()["regions"].items() if types.get(instance_type))
        return (f"{instance_type} is not offered in {region} {when}; regions that offer it: "
                f"{', '.join(elsewhere) or 'none in the snapshot'}")
    if zones:
        missing = [z for z in zones if z not in offered]
        if missing:
            return (f"{instance_type} is not offered in {', '.join(missing)} {when}; zones that offer "
                    f"it: {', '.join(offered)} (zone names map to physical zones per account: "
                    "`make preflight` checks yours)")
    elif len(offered) < az_count:
        return (f"{instance_type} is offered in {len(offered)} of {region}'s zones {when} "
                f"({', '.join(offered)}), but network.az_count is {az_count}: list those zones in "
                "network.availability_zones, or lower az_count")
    return None
