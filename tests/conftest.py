"""Shared test setup: the project root on sys.path so tests import components and tools."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import pytest  # noqa: E402  (after the sys.path set-up above)


@pytest.fixture(autouse=True)
def _local_traffic_only(monkeypatch, tmp_path):
    """Tests talk only to servers they start on 127.0.0.1, with no developer's AWS setup.

    A proxy from the environment must not carry that traffic off the machine, and a
    developer's profiles, SSO or credential processes must not be consulted.
    """
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # `make test` exports MAKELEVEL, and the tools then name make variables in their
    # messages; tests run the tools as a direct command unless they set it themselves.
    monkeypatch.delenv("MAKELEVEL", raising=False)
