"""Region facts the inventory is checked against before anything is registered.

Availability Zone counts are what a new account sees in each commercial region (AWS
"Regions and Availability Zones" page, checked 2026). The program still asks AWS for the
zones at deploy time; this table only lets a wrong `az_count` fail at preview with a
clear message instead of a partial deployment.
"""
from __future__ import annotations

REGION_AZ_COUNT: dict[str, int] = {
    "us-east-1": 6,
    "us-east-2": 3,
    "us-west-1": 2,
    "us-west-2": 4,
    "ca-central-1": 3,
    "eu-west-1": 3,
    "eu-west-2": 3,
    "eu-west-3": 3,
    "eu-central-1": 3,
    "eu-north-1": 3,
    "ap-northeast-1": 3,
    "ap-northeast-2": 4,
    "ap-south-1": 3,
    "ap-southeast-1": 3,
    "ap-southeast-2": 3,
    "sa-east-1": 3,
}
