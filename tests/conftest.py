"""Shared fixtures: tiny real models trained by the real worker (no mocks)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from service.core.store import CheckpointStore
from service.worker.recipes import get_recipe, train_config
from service.worker.train import train
from tests.postgres import postgres_db_url, postgres_url  # noqa: F401 - the session's PostgreSQL
from tests.servers import (  # noqa: F401 - the shared live servers, as fixtures
    batching_server,
    conditional_server,
    oracle_server,
    served_oracles,
    server,
    small_queue_server,
    unadmitted_server,
)

# One torch thread here and in every process the suite starts (servers, the CLI: they inherit
# OMP_NUM_THREADS). The suite shares 2 cores between itself, a server and whatever else runs, and
# torch's OpenMP threads spin against each other there: 300 training steps took 187 s with
# torch's default 2 threads on the busy 2-core VM and 27 s with one. No test asserts a thread
# count; a server's own default stays torch's.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="module")
def every_core():
    """A module's in-process tensor work on every core, for modules where nothing else runs
    beside it (no server is busy while they run): the density-guidance calibrations and the
    energy models' double backward took 98 s on one thread and 59 s on two, and the shipped
    models' 10,000-sample draws 2 minutes; their assertions hold up to thread-order rounding."""
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


REPO = Path(__file__).resolve().parents[1]
SHIPPED_STORE = REPO / "model_store"
TINY_STEPS = 300


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with moons-plain and moons-density after a few hundred real training steps."""
    root = tmp_path_factory.mktemp("store")
    for objective in ("plain", "density"):
        # the manifest's KL from 500 samples, as the conditional store's: no test reads its
        # value, and 2,000 samples' exact metrics cost ~10 s of the session's first setup
        config = train_config("paper", objective, steps=TINY_STEPS, kl_samples=500)
        train("moons", config, out=root, progress=False)
    return root


@pytest.fixture(scope="session")
def conditional_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gaussians: a class-conditional model, its autoguidance guide (both a few hundred real
    steps, the classifier trained with the model), and an unconditional plain model."""
    root = tmp_path_factory.mktemp("conditional")
    # the improved recipe's schedule on the guide's small network with the paper's coordinate
    # scale: seconds to train, not a minute, and a held-out ODE likelihood (in /evaluate) of 3 s
    # instead of 14 (the network is not what these tests are about)
    small_net = replace(get_recipe("guide").model, coord_scale=25.0)
    small = replace(get_recipe("improved"), model=small_net)
    runs = [("improved", "conditional", TINY_STEPS, small), ("guide", "conditional", 100, None)]
    runs.append(("paper", "plain", 100, None))
    for recipe, objective, steps, override in runs:
        config = train_config(recipe, objective, steps=steps, kl_samples=500, classifier_steps=300)
        train("gaussians", config, out=root, progress=False, recipe=override)
    return root


@pytest.fixture(scope="session")
def conditional_model(conditional_store: Path):
    return CheckpointStore(conditional_store).load_ready("gaussians-conditional-improved")


@pytest.fixture(scope="session")
def guide_model(conditional_store: Path):
    return CheckpointStore(conditional_store).load_ready("gaussians-conditional-guide")


@pytest.fixture(scope="session")
def api_store(tiny_store: Path) -> Path:
    """The tiny store that live servers read (moons: a plain and a density model)."""
    return tiny_store


@pytest.fixture(scope="session")
def plain_model(tiny_store: Path):
    return CheckpointStore(tiny_store).load_ready("moons-plain")


@pytest.fixture(scope="session")
def density_model(tiny_store: Path):
    return CheckpointStore(tiny_store).load_ready("moons-density")
