"""class_scores (the class metrics of /evaluate) against known answers: samples drawn by hand
from a class's exact distribution, scored with the oracle's exact posterior as the classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from service.core.class_metrics import class_scores
from service.core.classifier import PROBABILITY_FLOOR
from service.core.data import GAUSSIAN_MEAN, GAUSSIAN_SD
from service.core.store import CheckpointStore

N = 20_000  # the standard errors below are for this many samples
RIGHT = 1


@pytest.fixture(scope="module")
def oracles(tmp_path_factory):
    store = CheckpointStore(tmp_path_factory.mktemp("class_metrics"))
    for dataset in ("boxes", "gaussians"):
        store.save_oracle(dataset, "improved")
    return {d: store.load_ready(f"{d}-oracle-improved") for d in ("boxes", "gaussians")}


def box(x0: float, n: int = N, seed: int = 0) -> np.ndarray:
    """Uniform on [x0, x0 + 2] x [-1, 1]."""
    u = np.random.default_rng(seed).uniform(0, 2, size=(n, 2))
    return (u + [x0, -1.0]).astype(np.float32)


def test_the_right_boxs_own_samples_score_what_its_data_does(oracles):
    s = class_scores(oracles["boxes"], box(1.0), RIGHT, 5)
    assert (s.label, s.class_name) == (RIGHT, "right")
    assert s.support_fraction == s.data_support_fraction == 1.0
    # a uniform square of side 2 about its centre: E|x - c| = (sqrt 2 + asinh 1) / 3 (se 0.002)
    exact = (math.sqrt(2) + math.asinh(1)) / 3
    assert s.mean_centre_distance == pytest.approx(exact, abs=0.01)
    assert s.data_mean_centre_distance == pytest.approx(exact, abs=0.01)
    assert s.mean_shift_away == pytest.approx(0.0, abs=0.015)  # se 0.004
    # disjoint classes: the exact posterior is 1 on the box, so E[1 / p(c | x)] is 1
    assert s.mean_reciprocal_probability == pytest.approx(1.0, abs=1e-9)
    assert s.data_mean_reciprocal_probability == pytest.approx(1.0, abs=1e-9)
    assert s.classified_fraction == 1.0 and s.classifier_heldout_accuracy == 1.0
    assert abs(s.class_kl_bits) < 0.05  # the k-NN estimate of KL(p || p)


def test_samples_moved_away_by_half_a_unit_read_as_exactly_that(oracles):
    here = class_scores(oracles["boxes"], box(1.0), RIGHT, 5)
    moved = class_scores(oracles["boxes"], box(1.5), RIGHT, 5)  # the same draws, x + 0.5
    assert moved.mean_shift_away - here.mean_shift_away == pytest.approx(0.5, abs=1e-6)
    inside = moved.support_fraction
    assert inside == pytest.approx(0.75, abs=0.01)  # [1.5, 3.5] in [1, 3]
    # the quarter beyond x = 3 is off both boxes: the exact posterior (0 / 0 there) rules it
    # out, as it does a point far off (it made E[1 / p] NaN, and /evaluate's null)
    assert moved.classified_fraction == inside
    expected = inside + (1 - inside) / PROBABILITY_FLOOR
    assert moved.mean_reciprocal_probability == pytest.approx(expected, rel=1e-9)
    assert moved.class_kl_bits > here.class_kl_bits + 0.3


def test_the_other_classs_samples_and_a_mix_of_both(oracles):
    wrong = class_scores(oracles["boxes"], box(-3.0), RIGHT, 5)
    assert wrong.support_fraction == 0.0 and wrong.classified_fraction == 0.0
    # p(right | x) = 0 on the left box, floored: each sample counts 1 / PROBABILITY_FLOOR
    assert wrong.mean_reciprocal_probability == pytest.approx(1 / PROBABILITY_FLOOR, rel=1e-9)
    assert wrong.mean_shift_away == pytest.approx(-4.0, abs=0.02)  # centre (-2, 0) vs (2, 0)
    mix = np.concatenate([box(1.0, N // 2), box(-3.0, N // 2, seed=1)])
    half = class_scores(oracles["boxes"], mix, RIGHT, 5)
    assert half.support_fraction == half.classified_fraction == 0.5
    expected = (1 + 1 / PROBABILITY_FLOOR) / 2
    assert half.mean_reciprocal_probability == pytest.approx(expected, rel=1e-9)


def test_overlapping_gaussians_read_their_closed_forms(oracles):
    """Class 1 of the gaussians: N((1, 0), 0.7^2 I) beside N((-1, 0), 0.7^2 I)."""
    rng = np.random.default_rng(2)
    own = (rng.normal(0, GAUSSIAN_SD, size=(N, 2)) + [GAUSSIAN_MEAN, 0]).astype(np.float32)
    s = class_scores(oracles["gaussians"], own, RIGHT, 5)
    assert s.support_fraction == pytest.approx(0.95, abs=0.006)  # the 95% disc (se 0.0015)
    # the Bayes rule puts x in class 1 where x_1 > 0: P = Phi(mean / sd) (se 0.002)
    bayes = norm.cdf(GAUSSIAN_MEAN / GAUSSIAN_SD)
    assert s.classified_fraction == pytest.approx(bayes, abs=0.008)
    assert s.classifier_heldout_accuracy == pytest.approx(bayes, abs=0.01)
    # a 2D Gaussian's mean distance from its mean: sd sqrt(pi / 2) (se 0.003)
    assert s.mean_centre_distance == pytest.approx(GAUSSIAN_SD * math.sqrt(math.pi / 2), abs=0.012)
    assert s.mean_shift_away == pytest.approx(0.0, abs=0.02)  # se 0.005
    assert abs(s.class_kl_bits) < 0.05
