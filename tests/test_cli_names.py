"""Messages name the option the way the user passes it: make variables under make."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT
from tools import cli_names


def test_under_make_messages_name_the_make_variable(monkeypatch):
    monkeypatch.setenv("MAKELEVEL", "1")
    assert cli_names.option("--outputs", "out.json") == "OUTPUTS=out.json"
    assert cli_names.option("--base") == "BASE=<rev>"
    assert cli_names.option("--stacks") == "A=<stack> B=<stack>"
    monkeypatch.delenv("MAKELEVEL")
    assert cli_names.option("--outputs", "out.json") == "--outputs out.json"


def test_make_smoke_without_a_stack_says_which_variable_to_set():
    # The real make target, as a user would type it without STACK's default reaching smoke.
    result = subprocess.run([sys.executable, "-m", "tools.smoke"], cwd=ROOT, capture_output=True,
                            text=True, env={"MAKELEVEL": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert "STACK=NAME" in error and "OUTPUTS=FILE" in error and "--outputs" not in error
