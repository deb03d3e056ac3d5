"""The models shipped in model_store/: they load, and reproduce the KL their manifests state."""

import json
import math

import pytest

from service.core.data import DATASETS, reference_points
from service.core.evaluation import reference_mean_log_rho
from service.core.kl import DEFAULT_K, finite_rows, kl_divergence_bits
from service.core.manifest import ORACLE, ModelKind
from service.core.offline import sample
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore
from service.worker.recipes import get_recipe
from tests.conftest import SHIPPED_STORE

STORE = CheckpointStore(SHIPPED_STORE)
# the trained models; the oracles (analytic, no weights) are checked on their own below
ORACLES = [n for n in STORE.names() if ModelKind.from_name(n).objective == ORACLE]
NAMES = [n for n in STORE.names() if n not in ORACLES]
# The worst of the reference's three published baseline runs (docs/DESIGN.md#7-metrics), bits
# at 10,000 samples,
# plus the estimator's scatter between sampling seeds at that n (measured up to ~0.05 bits).
REFERENCE_RUNS_MAX_KL = {"circle": 0.36, "dino": 1.12, "line": 0.167, "moons": 0.095}
ESTIMATOR_SCATTER = 0.05
PAPER_BASELINE_KL = {"circle": 0.34, "dino": 1.04, "line": 0.15, "moons": 0.10}


def test_every_dataset_ships_both_recipes():
    for dataset in REFERENCE_RUNS_MAX_KL:
        for name in (f"{dataset}-plain", f"{dataset}-density", f"{dataset}-plain-improved"):
            assert name in NAMES, name


# The Bayes rule's accuracy: the boxes and moons are separable, the Gaussians (+-1, sd 0.7)
# overlap: Phi(1 / 0.7) = 0.923
BAYES_ACCURACY = {"boxes": 1.0, "gaussians": 0.923, "moons": 1.0}


@pytest.mark.parametrize("dataset", sorted(BAYES_ACCURACY))
def test_each_labelled_dataset_ships_a_conditional_model_its_guide_and_classifier(dataset):
    main = STORE.load(f"{dataset}-conditional-improved")
    guide = STORE.load(f"{dataset}-conditional-guide")
    assert main.network.config.num_classes == guide.network.config.num_classes == 2
    assert main.manifest.schedule == guide.manifest.schedule  # autoguidance needs one schedule
    assert main.classifier is not None
    accuracy = main.manifest.raw["classifier"]["heldout_accuracy"]
    assert BAYES_ACCURACY[dataset] - 0.005 <= accuracy <= BAYES_ACCURACY[dataset] + 0.005
    assert main.manifest.raw["kl_bits"] <= 0.05  # its unconditional (null-class) samples


@pytest.mark.parametrize("dataset", sorted(REFERENCE_RUNS_MAX_KL))
def test_improved_models_halve_the_papers_baseline_kl(dataset):
    """The improved recipe's target, on the shipped models' own manifests (seed 0, n 10,000)."""
    m = STORE.read_manifest(f"{dataset}-plain-improved")
    assert m["recipe"] == "improved" and m["training"]["objective"] == "plain"
    assert m["kl_bits"] <= PAPER_BASELINE_KL[dataset] / 2
    assert m["train_seconds"] <= 600  # at most 10 minutes of training


@pytest.mark.parametrize("name", NAMES)
def test_shipped_checkpoint_is_small_complete_and_loads(name):
    folder = SHIPPED_STORE / name
    assert (folder / "weights.safetensors").stat().st_size < 2_000_000
    assert (folder / "loss.csv").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["training"]["steps"] == get_recipe(manifest["recipe"]).train.steps
    assert math.isfinite(manifest["kl_bits"]) and "mean_log_p_hat" in manifest
    STORE.load(name)


@pytest.mark.parametrize("name", NAMES)
def test_baseline_samples_reach_the_manifest_kl(name, every_core):
    """Same seed, same device: the KL of the manifest, up to thread-order rounding."""
    model = STORE.load_ready(name)
    m = model.manifest
    drawn = sample(model, SampleSpec(variant="baseline", n=m["kl_samples"], seed=m["kl_seed"]))
    # the KL alone, as evaluate() computes it (its coverage and exact metrics cost 1.5 s a model)
    finite, _ = finite_rows(drawn.samples)
    rho = reference_mean_log_rho(model.dataset, DEFAULT_K)
    kl_bits = kl_divergence_bits(reference_points(model.dataset), finite, DEFAULT_K, rho)
    assert abs(kl_bits - m["kl_bits"]) < 0.02
    if m["training"]["objective"] == "plain" and m.get("recipe") == "paper":
        assert m["kl_bits"] <= REFERENCE_RUNS_MAX_KL[m["dataset"]] + ESTIMATOR_SCATTER


def test_every_dataset_ships_an_oracle_per_schedule_and_each_is_current():
    """Written by `dgs oracles`; a change to a density without rewriting them fails here."""
    assert sorted(ORACLES) == sorted(
        f"{d}-oracle{suffix}" for d in DATASETS for suffix in ("", "-improved")
    )
    for name in ORACLES:
        assert not (SHIPPED_STORE / name / "weights.safetensors").exists()
        assert STORE.load(name).analytic is not None
