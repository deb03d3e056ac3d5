"""The real server for tests: experiments/serving.py's `running_server`, plus a client; and
`server_process` for the tests that watch a server start or stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from experiments.serving import free_port, running_server
from tests.polling import wait_until

__all__ = ["free_port", "live_server", "server_process"]


@contextlib.contextmanager
def live_server(store: Path, **env: str) -> Iterator[httpx.Client]:
    """Start `dgs serve` on `store` with settings `env`; yield a client once /readyz says 200.

    The tiny test models' ODE is stiff: 500 held-out points for nll_bits cost ~30 s of each
    server's first /evaluate per model; 100 give the same code path in ~6 s."""
    env = {"HELDOUT_NLL_POINTS": "100", **env}
    with running_server(store, **env) as base, httpx.Client(base_url=base, timeout=120) as client:
        yield client


@contextlib.contextmanager
def server_process(
    store: Path, log: Path, **env: str
) -> Iterator[tuple[subprocess.Popen, httpx.Client]]:
    """`dgs serve` on `store`, yielded as soon as it answers /healthz (its models may still be
    loading), with its output in `log`. The test may stop it itself (SIGINT); it is stopped and
    waited for on the way out in any case."""
    port = free_port()
    environment = {
        **os.environ,
        "LOG_LEVEL": "info",
        "HELDOUT_NLL_POINTS": "100",
        "DATA_DIR": str(log.parent / f"{log.stem}-data"),  # the test's own sweeps database
        **env,
    }
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*command, "--model-store", str(store)],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as client:

            def alive() -> bool:
                assert proc.poll() is None, log.read_text()[-2000:]
                with contextlib.suppress(httpx.HTTPError):
                    return client.get("/healthz", timeout=2).status_code == 200
                return False

            wait_until(alive, 90, "the server answers /healthz", every=0.1)
            yield proc, client
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
