"""Measure what the README's first command downloads on a fresh machine, and quote it there.

    python -m tools.first_run      (needs access to PyPI; rewrites the README's figure)

Downloads the pinned requirements (requirements-dev.txt, with their dependencies, as
`make` installs them) into a temporary directory with pip and writes their total size
between the README's `first-run` markers, with the date it was measured.
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


def phrase(total_bytes: int, when: datetime.date) -> str:
    return f"about {round(total_bytes / 1_000_000, -1):.0f} MB of wheels, measured {when.isoformat()}"


def updated(readme: str, text: str) -> str:
    if not MARKERS.search(readme):
        raise SystemExit("README.md has no first-run markers")
    return MARKERS.sub(lambda m: m.group(1) + text + m.group(3), readme)


def measure() -> int:
    with tempfile.TemporaryDirectory() as directory:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "-r", str(PROJECT_DIR / "requirements-dev.txt"), "-d", directory], check=True)
        return sum(path.stat().st_size for path in Path(directory).iterdir())


def main() -> int:
    total = measure()
    README.write_text(updated(README.read_text(), phrase(total, datetime.date.today())))
    print(phrase(total, datetime.date.today()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
