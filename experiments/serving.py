"""Start the real server (`dgs serve`, uvicorn) in a subprocess on a free loopback port.

Used by the benchmarks and by the integration tests, which talk HTTP to it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(
    store: str | Path, ready_timeout: float = 90, log: Path | None = None, **env: object
) -> Iterator[str]:
    """Serve `store` with settings `env` (e.g. BATCHING="off"); yield the base URL once ready.
    `log`: a file that gets the server's output (else a pipe nobody reads past start-up)."""
    port = free_port()
    output = open(log, "wb") if log is not None else subprocess.PIPE  # noqa: SIM115
    # its own sweeps database unless told which: never the working directory's data/
    scratch = tempfile.TemporaryDirectory(prefix="dgs-data-")
    environment = {
        **os.environ,
        "LOG_LEVEL": "warning",
        "DATA_DIR": scratch.name,
        **{k: str(v) for k, v in env.items()},
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "serve",
            "--port",
            str(port),
            "--model-store",
            str(store),
        ],
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                text = log.read_text() if log is not None else proc.stdout.read().decode()
                raise RuntimeError(f"server exited: {text[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready in {ready_timeout} s")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log is not None:
            output.close()
        scratch.cleanup()
