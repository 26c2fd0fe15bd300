"""Measure what the README's first commands download on a fresh machine, and quote it there.

    python -m tools.first_run      (needs access to PyPI; rewrites the README's figures)

Downloads each pinned requirements set (with its dependencies, as `make` installs it) into
a temporary directory with pip and writes its total size between the README's markers,
with the date it was measured: requirements-dev.txt (`.venv`, both commands) between
`first-run`, requirements-checkov.txt (`.checkov/`, `make test` only) between
`first-run-checkov`.
"""
from __future__ import annotations

import datetime
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.stack_files import PROJECT_DIR

README = PROJECT_DIR / "README.md"
MARKERS = re.compile(r"(<!-- first-run:start -->)(.*?)(<!-- first-run:end -->)", re.S)
CHECKOV_MARKERS = re.compile(r"(<!-- first-run-checkov:start -->)(.*?)(<!-- first-run-checkov:end -->)", re.S)
MEASURED = ((MARKERS, "requirements-dev.txt"), (CHECKOV_MARKERS, "requirements-checkov.txt"))


def phrase(total_bytes: int, when: datetime.date) -> str:
    return f"about {round(total_bytes / 1_000_000, -1):.0f} MB of wheels, measured {when.isoformat()}"


def updated(readme: str, text: str, markers: re.Pattern = MARKERS) -> str:
    if not markers.search(readme):
        raise SystemExit(f"README.md has no {markers.pattern.split(':start')[0][7:]} markers")
    return markers.sub(lambda m: m.group(1) + text + m.group(3), readme)


def measure(requirements: str = "requirements-dev.txt") -> int:
    with tempfile.TemporaryDirectory() as directory:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "-r", str(PROJECT_DIR / requirements), "-d", directory], check=True)
        return sum(path.stat().st_size for path in Path(directory).iterdir())


def main() -> int:
    readme = README.read_text()
    for markers, requirements in MEASURED:
        text = phrase(measure(requirements), datetime.date.today())
        readme = updated(readme, text, markers)
        print(f"{requirements}: {text}")
    README.write_text(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
