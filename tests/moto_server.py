"""One real AWS API emulator (moto in server mode) on 127.0.0.1 for the tests that need it."""
from __future__ import annotations

import logging
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator

from moto.server import ThreadedMotoServer


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto on a free loopback port, wait until it answers, yield its URL, stop it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server on {url} did not answer within 30 s")
                time.sleep(0.1)
        yield url
    finally:
        server.stop()


def reset(url: str) -> None:
    """Forget every resource the previous test created."""
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
