"""Snapshot which Availability Zones offer each catalogued instance type, per region.

    python -m tools.offerings [--endpoint-url URL] [--source TEXT]   (make offerings)

Asks EC2 `DescribeInstanceTypeOfferings` (location type availability-zone) in every region
the inventory accepts, for the catalog's GPU instance types and the system pool types,
and writes components/serving/offerings.json with the date and the source. The preview
checks inventories against this snapshot offline; `make preflight` stays the live check
of your own account (zone names map to physical zones per account).

Exit codes: 0 written, 2 AWS could not be asked (the message says why).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any, Optional

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from components.aws_regions import REGION_AZ_COUNT
from components.serving import catalog
from components.serving.availability import SNAPSHOT_PATH

# CPU types the stacks use for the EKS system pool; GPU types come from the catalog.
SYSTEM_POOL_TYPES = ("m7i.large", "m7i.xlarge", "m7i.2xlarge", "m6i.large", "m6i.xlarge")


def instance_types() -> list[str]:
    return sorted({*catalog.INSTANCES, *SYSTEM_POOL_TYPES})


def snapshot(session: boto3.session.Session, *, endpoint_url: Optional[str], source: str,
             today: datetime.date) -> dict[str, Any]:
    wanted = instance_types()
    regions: dict[str, dict[str, list[str]]] = {}
    for region in sorted(REGION_AZ_COUNT):
        ec2 = session.client("ec2", region_name=region, endpoint_url=endpoint_url,
                             config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"}))
        offered: dict[str, set[str]] = {}
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": wanted}])
        for page in pages:
            for offering in page["InstanceTypeOfferings"]:
                offered.setdefault(offering["InstanceType"], set()).add(offering["Location"])
        regions[region] = {name: sorted(zones) for name, zones in sorted(offered.items())}
    return {"generated": today.isoformat(), "source": source, "instance_types": wanted,
            "regions": regions}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.offerings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint-url", help="EC2 endpoint (an emulator, for tests)")
    parser.add_argument("--source", default="AWS EC2 DescribeInstanceTypeOfferings",
                        help="where the answers came from, recorded in the snapshot")
    parser.add_argument("--out", type=Path, default=SNAPSHOT_PATH)
    args = parser.parse_args(argv)
    try:
        data = snapshot(boto3.session.Session(), endpoint_url=args.endpoint_url, source=args.source,
                        today=datetime.date.today())
    except (BotoCoreError, ClientError) as error:
        print(f"offerings: AWS could not be asked: {error}; set AWS credentials (AWS_PROFILE) "
              "or pass --endpoint-url", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} ({len(data['regions'])} regions, {len(data['instance_types'])} types)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
