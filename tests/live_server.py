"""The real server for tests: experiments/serving.py's `running_server`, plus a client."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from experiments.serving import free_port, running_server

__all__ = ["free_port", "live_server"]


@contextlib.contextmanager
def live_server(store: Path, **env: str) -> Iterator[httpx.Client]:
    """Start `dgs serve` on `store` with settings `env`; yield a client once /readyz says 200.

    The tiny test models' ODE is stiff: 500 held-out points for nll_bits cost ~30 s of each
    server's first /evaluate per model; 100 give the same code path in ~6 s."""
    env = {"HELDOUT_NLL_POINTS": "100", **env}
    with running_server(store, **env) as base, httpx.Client(base_url=base, timeout=120) as client:
        yield client
