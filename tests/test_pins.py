"""The pinned-versions table in docs/OPERATIONS.md names exactly the pins the code installs."""
from __future__ import annotations

import importlib
import pkgutil
import re

import components.eks
from components.eks.addons import CHARTS
from components.serving.catalog import RUNTIME_IMAGES
from tests.conftest import ROOT


def _documented() -> dict[str, str]:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    table = re.search(r"<!-- pins:start -->(.*?)<!-- pins:end -->", text, re.S).group(1)
    rows = [line.split("|")[1:-1] for line in table.strip().splitlines()[2:]]
    return {cells[0].strip(): cells[1].strip() for cells in rows}


def _pinned() -> dict[str, str]:
    """Every chart in the EKS package (CHARTS, and every module-level *_CHART tuple, whose
    name is the last path element of its reference) and every runtime image."""
    pins = {f"chart {name}": version for name, (_, _, version) in CHARTS.items()}
    for module_info in pkgutil.iter_modules(components.eks.__path__):
        module = importlib.import_module(f"components.eks.{module_info.name}")
        for attribute, value in vars(module).items():
            if attribute.endswith("_CHART") and isinstance(value, tuple):
                *reference, version = value
                pins[f"chart {reference[-1].rstrip('/').split('/')[-1]}"] = version
    pins.update({f"image {image.repository}": image.tag for image in RUNTIME_IMAGES.values()})
    return pins


def test_every_pin_in_the_code_is_in_the_table_with_the_same_version():
    pinned = _pinned()
    assert len(pinned) >= 15
    assert _documented() == pinned
