"""Admission of a stack's inventory: every check that can refuse it, before anything registers.

A model that does not fit its GPU, a throttle above what the models serve, an alarm
threshold the runtimes exceed by design: each is refused here, so `pulumi up` never starts
on a stack it would have to abandon halfway. Refusals read like a bad inventory value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.config import Inventory, InventoryError, load_inventory
from components.gateway.api import ThrottleError, gateway_throttles
from components.observability import ObservabilityError, check_alarm_thresholds
from components.serving.catalog import CatalogError
from components.serving.runtimes import LaunchError, render_for_inventory
from components.serving.sizing import SizingError

INVENTORY_PROBLEMS = (InventoryError, SizingError, ThrottleError, ObservabilityError, LaunchError,
                      CatalogError)


class InventoryRefused(Exception):
    """The inventory cannot be served; the message says where and what to change."""


@dataclass(frozen=True)
class AdmittedInventory:
    inventory: Inventory
    # Per model and gateway method, the throttle its capacity at max_replicas allows.
    gateway_throttles: Any


def admit(stack: str) -> AdmittedInventory:
    try:
        inventory = load_inventory()
        for model in inventory.models:
            render_for_inventory(inventory, model)
        throttles = gateway_throttles(inventory, stack)
        check_alarm_thresholds(inventory, stack)
    except INVENTORY_PROBLEMS as error:
        raise InventoryRefused(str(error)) from None
    return AdmittedInventory(inventory=inventory, gateway_throttles=throttles)
