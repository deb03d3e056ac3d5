"""The live servers the suite shares, one per set of settings, each started once a session.

Each start costs a process, torch's import, loading, warm-up and the cost measurement, and the
first /evaluate per model its held-out likelihood: every module used to start its own. A test
needs its own server only when it changes the store, reads the server's log, or stops it;
those start one in the test. Requests are sequential across tests, so a shared server's
metrics are compared as differences, and each test leaves no work behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.core.store import CheckpointStore
from tests.live_server import live_server


@pytest.fixture(scope="session")
def server(api_store: Path) -> Iterator[httpx.Client]:
    """The tiny moons store with default settings but 1,024 rows a step, no admin token, and
    100 held-out points behind each model's nll_bits (the same code path as 500; each model's
    first /evaluate paid ~10 s for 500, which no test reads)."""
    env = {"MAX_ROWS_PER_STEP": "1024", "ADMIN_TOKEN": "", "HELDOUT_NLL_POINTS": "100"}
    with live_server(api_store, **env) as client:
        yield client


@pytest.fixture(scope="session")
def batching_server(api_store: Path) -> Iterator[httpx.Client]:
    """512 rows a step (8,192 rows take 1,600 steps: time to watch them), previews of at most
    100 rows: batching, streams and the observability test (10 held-out points behind its
    nll_bits panel: it is checked for data, not its value)."""
    env = {"MAX_ROWS_PER_STEP": "512", "MAX_PREVIEW_ROWS": "100", "HELDOUT_NLL_POINTS": "10"}
    with live_server(api_store, **env) as client:
        yield client


@pytest.fixture(scope="session")
def unadmitted_server(api_store: Path) -> Iterator[httpx.Client]:
    """Admission off: a request that cannot meet its deadline is run, and ends in a 504."""
    with live_server(api_store, MAX_ROWS_PER_STEP="512", ADMISSION="off") as client:
        yield client


@pytest.fixture(scope="session")
def small_queue_server(api_store: Path) -> Iterator[httpx.Client]:
    """A queue of 2,500 rows: one request of 2,000 leaves no room for another of 1,000."""
    env = {"MAX_N": "2000", "MAX_QUEUED_ROWS": "2500", "MAX_ROWS_PER_STEP": "256"}
    with live_server(api_store, **env) as client:
        yield client


@pytest.fixture(scope="session")
def conditional_server(conditional_store: Path) -> Iterator[httpx.Client]:
    # 10 held-out points for nll_bits (its ODE is not what these tests are about)
    with live_server(conditional_store, ADMIN_TOKEN="", HELDOUT_NLL_POINTS="10") as client:
        yield client


@pytest.fixture(scope="session")
def served_oracles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The improved oracles of boxes and moons, and moons' on the paper's schedule."""
    root = tmp_path_factory.mktemp("oracle_store")
    store = CheckpointStore(root)
    for dataset in ("boxes", "moons"):
        store.save_oracle(dataset, "improved")
    store.save_oracle("moons", "paper")
    return root


@pytest.fixture(scope="session")
def oracle_server(served_oracles: Path) -> Iterator[httpx.Client]:
    with live_server(served_oracles, ADMIN_TOKEN="", HELDOUT_NLL_POINTS="50") as client:
        yield client
