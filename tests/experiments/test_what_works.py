"""The "what works" table end to end on tiny real models: every cell, the energy
checks, the density targets, the figures; and dgs reproduce saying when it cannot run it."""

from __future__ import annotations

import csv
import math

import matplotlib.image
import numpy as np
import pytest

from experiments import what_works as ww
from tests.conftest import SHIPPED_STORE


@pytest.fixture(scope="module")
def three_models():
    """moons' density model (the paper's recipe) beside the improved recipe's plain and energy
    models: the shipped ones, trained by the real worker (training them anew cost this module
    two training runs, the energy one a double backward per step)."""
    return SHIPPED_STORE


@pytest.fixture(scope="module")
def table(three_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("what_works")
    rows = ww.what_works(
        out,
        n=150,
        store=three_models,
        datasets=["moons"],
        heldout=10,
        steps=10,
        exact_check=4,
        spacing=0.05,  # a coarse grid: the shipped figures use 0.005
    )
    return out, rows


def test_every_cell_is_measured(table):
    out, rows = table
    assert [(r.variant, r.sampler) for r in rows] == [(c[1], c[4]) for c in ww.CELLS]
    with open(out / "what_works.csv") as f:
        saved = list(csv.DictReader(f))
    assert len(saved) == len(ww.CELLS)
    for r in rows:
        assert 0 <= r.precision <= 1 and 0 <= r.recall <= 1 and r.seconds_per_sample > 0
        assert r.nonfinite >= 0 and math.isfinite(r.kl_bits)
    md = (out / "what_works.md").read_text()
    assert md.count("\n") == 2 + len(ww.CELLS)


def test_density_cells_report_their_targets(table):
    _, rows = table
    density = [r for r in rows if r.variant == "density"]
    assert len(density) == 2 * len(ww.QUANTILES)
    for r in density:
        assert math.isfinite(r.target_log_p)
        assert 0 <= r.tracked_within <= 1 and 0 <= r.exact_within <= 1
    others = [r for r in rows if r.variant != "density"]
    assert all(math.isnan(r.target_log_p) for r in others)
    # higher quantiles ask for higher log-densities
    for model in {r.model for r in density}:
        targets = [r.target_log_p for r in density if r.model == model]
        assert targets == sorted(targets)


def test_energy_checks_and_figures(table):
    out, _ = table
    energy = (out / "energy.md").read_text().splitlines()
    assert energy[2].startswith("| moons |") and energy[3] == ""
    levels = [line for line in energy[4:] if line.startswith("| moons |")]
    assert [line.split("|")[2].strip() for line in levels] == [str(t) for t in ww.CHECK_LEVELS]
    for name in ("what_works_samples.png", "coverage_vs_scale.png", "density_targets.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 150 and image.shape[1] > 150, name


def test_reproduce_names_the_models_it_lacks(tiny_store, tmp_path):
    from experiments.reproduce import second_table
    from service.core.store import CheckpointStore

    second_table(CheckpointStore(tiny_store), ["moons"], 100, 0, 5, tmp_path)
    note = (tmp_path / "what_works.md").read_text()
    assert note.startswith("Not run") and "moons-energy-improved" in note


def test_the_data_yardstick_is_the_kde_of_the_data(monkeypatch):
    """Known answer: a KDE of N(0, s^2 I) data with kernel width h is, in expectation, the
    density of N(0, (s^2 + h^2) I); with 100,000 points it matches to a few hundredths."""
    s, h = 0.5, 0.2
    rng = np.random.default_rng(0)
    monkeypatch.setattr(ww, "get_dataset", lambda name, n, seed: rng.normal(0, s, (n, 2)))
    log_density = ww.data_log_density("gaussian", bandwidth=h)
    x = np.array([[0.0, 0.0], [0.3, -0.2], [0.8, 0.5], [np.nan, 1.0]])
    var = s**2 + h**2
    exact = -0.5 * (x[:3] ** 2).sum(axis=1) / var - math.log(2 * math.pi * var)
    got = log_density(x)
    assert got.shape == (3,)  # the non-finite row is left out
    np.testing.assert_allclose(got, exact, atol=0.03)
    far = log_density(np.array([[40.0, 0.0]]))
    assert np.isfinite(far).all() and far[0] < -1000  # very low, never -inf
