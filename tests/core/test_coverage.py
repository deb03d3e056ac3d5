import math
from types import SimpleNamespace

import numpy as np
import pytest

import service.core.coverage as coverage_module
from service.core.coverage import Coverage, coverage_against_data, precision_recall
from service.core.data import get_dataset, reference_points
from service.core.evaluation import score


def brute_force(real, fake, k):
    """O(n^2) improved precision / recall straight from the definition."""

    def pairwise(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))

    # column k of each sorted row: the row's own 0 is column 0, so this is the k-th other point
    r_real = np.sort(pairwise(real, real), axis=1)[:, k]
    r_fake = np.sort(pairwise(fake, fake), axis=1)[:, k]
    precision = (pairwise(fake, real) <= r_real[None, :]).any(axis=1).mean()
    recall = (pairwise(real, fake) <= r_fake[None, :]).any(axis=1).mean()
    return float(precision), float(recall)


def two_clusters(rng, n_each):
    left = rng.normal(size=(n_each, 2)) + (-10.0, 0.0)
    right = rng.normal(size=(n_each, 2)) + (10.0, 0.0)
    return np.concatenate([left, right])


def test_identical_sets_are_fully_precise_and_covering():
    x = np.random.default_rng(0).normal(size=(1000, 2))
    assert precision_recall(x, x.copy()) == Coverage(1.0, 1.0, 5, 1000, 1000)


def test_far_apart_sets_score_zero():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(1000, 2))
    fake = rng.normal(size=(1000, 2)) + (100.0, 0.0)
    c = precision_recall(real, fake)
    assert (c.precision, c.recall) == (0.0, 0.0)


def test_one_mode_of_two_halves_recall_keeps_precision():
    # fake: as many fresh draws as real, all from the left cluster only. Precision is just
    # below 1: a few fake points in the left cluster's tail fall outside every real ball
    # (measured 0.9925-0.9985 over seeds 0-19), so >= 0.98. Recall: the right cluster is 20
    # standard deviations away from every fake point, so at most 0.5 exactly; the left half
    # loses the same few tail points (measured 0.497-0.500), so within [0.48, 0.5].
    rng = np.random.default_rng(2)
    real = two_clusters(rng, 1000)
    fake = rng.normal(size=(2000, 2)) + (-10.0, 0.0)
    c = precision_recall(real, fake)
    assert c.precision >= 0.98
    assert 0.48 <= c.recall <= 0.5


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("n_real, n_fake", [(300, 300), (300, 200), (150, 320)])
def test_matches_brute_force(seed, n_real, n_fake):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_real, 2))
    # shifted: precision and recall strictly between 0 and 1, so a wrong ball, a
    # wrong k or a nearest-centre shortcut changes the counts
    fake = rng.normal(size=(n_fake, 2)) + (2.0, 0.0)
    for k in (1, 5):
        c = precision_recall(real, fake, k)
        assert (c.precision, c.recall) == brute_force(real, fake, k)
        assert (c.k, c.n_real, c.n_fake) == (k, n_real, n_fake)
        assert 0 < c.precision < 1 and 0 < c.recall < 1


def test_matches_brute_force_with_ties_and_duplicates():
    # integer lattice points: many distances tie exactly with radii, and duplicates give zero
    # radii; "distance <= radius" must count a point on a ball's boundary as inside
    rng = np.random.default_rng(4)
    real = rng.integers(0, 12, size=(300, 2)).astype(float)
    fake = rng.integers(3, 16, size=(300, 2)).astype(float)
    for k in (1, 3, 5):
        c = precision_recall(real, fake, k)
        assert (c.precision, c.recall) == brute_force(real, fake, k)


def test_heavy_tailed_points_match_brute_force():
    # Cauchy points: a few huge balls next to many tiny ones, the case radius grouping is for
    rng = np.random.default_rng(5)
    real, fake = rng.standard_cauchy(size=(300, 2)), rng.standard_cauchy(size=(300, 2))
    c = precision_recall(real, fake)
    assert (c.precision, c.recall) == brute_force(real, fake, 5)


def test_inside_a_farther_larger_ball_counts():
    # six real points packed within 0.1 of the origin: tiny balls (radius <= 0.1); six real
    # points spaced 3 apart from (3, 0): the ball around (3, 0) reaches its 5th neighbour
    # (18, 0), radius 15. y = (0.5, 0) is nearest to the tight cluster (0.45 away, outside its
    # balls) yet inside the big ball 2.5 away. The five other fake points are outside all.
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    tight = 0.05 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    sparse = np.stack([3.0 * np.arange(1, 7), np.zeros(6)], axis=1)
    real = np.concatenate([tight, sparse])
    y = np.array([[0.5, 0.0]])
    far = np.stack([np.zeros(5), 100.0 + np.arange(5)], axis=1)
    fake = np.concatenate([y, far])

    # the construction does what it says: the nearest centre's ball misses y
    radii = np.sort(np.linalg.norm(real[:, None] - real[None], axis=-1), axis=1)[:, 5]
    distances = np.linalg.norm(real - y, axis=1)
    nearest = np.argmin(distances)
    assert distances[nearest] > radii[nearest]
    assert (distances <= radii).sum() >= 1

    assert precision_recall(real, fake).precision == pytest.approx(1 / 6)
    # the same membership test serves recall: swap the roles
    assert precision_recall(fake, real).recall == pytest.approx(1 / 6)


@pytest.mark.parametrize("n_real, n_fake, k", [(5, 100, 5), (100, 5, 5), (1, 10, 1)])
def test_too_few_rows_raise(n_real, n_fake, k):
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="k \\+ 1"):
        precision_recall(rng.normal(size=(n_real, 2)), rng.normal(size=(n_fake, 2)), k)


def test_bad_inputs_raise():
    x = np.random.default_rng(7).normal(size=(50, 2))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        precision_recall(x, bad)
    with pytest.raises(ValueError, match="same d"):
        precision_recall(x, np.zeros((50, 3)))
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(x, x, 0)


def test_coverage_against_data_drops_nonfinite_rows_and_uses_equal_sizes():
    samples = get_dataset("moons", 600, seed=1).copy()
    samples[[0, 10, 20]] = np.nan
    samples[[5, 15], 0] = np.inf
    c = coverage_against_data("moons", samples, k=5, seed=3)
    assert (c.n_real, c.n_fake, c.k) == (595, 595, 5)
    # the same computation by hand: default_rng(seed) picks the reference subset
    finite = samples[np.isfinite(samples).all(axis=1)]
    data = reference_points("moons")
    subset = data[np.random.default_rng(3).choice(len(data), size=595, replace=False)]
    assert c == precision_recall(subset, finite, 5)
    # deterministic, and fresh moons points score high against moons data
    assert coverage_against_data("moons", samples, k=5, seed=3) == c
    assert c.precision > 0.9 and c.recall > 0.9


def test_coverage_against_data_subsamples_samples_beyond_the_reference(monkeypatch):
    small = np.random.default_rng(8).normal(size=(50, 2))
    monkeypatch.setattr(coverage_module, "reference_points", lambda name: small)
    c = coverage_against_data("moons", np.random.default_rng(9).normal(size=(80, 2)))
    assert (c.n_real, c.n_fake) == (50, 50)


def test_coverage_against_data_too_few_finite_rows_raise():
    samples = np.full((20, 2), np.nan)
    samples[:5] = 0.0
    with pytest.raises(ValueError, match="k \\+ 1"):
        coverage_against_data("moons", samples, k=5)


def _result(samples):
    return SimpleNamespace(samples=samples, variant="baseline", scale=0.0, seed=0, seconds=1.0)


def test_evaluation_score_has_precision_and_recall():
    model = SimpleNamespace(name="moons-plain", dataset="moons")
    samples = get_dataset("moons", 1000, seed=11).copy()
    samples[:4] = np.nan
    ev = score(model, _result(samples), k=4)
    expected = coverage_against_data("moons", samples, k=4)
    assert (ev.precision, ev.recall) == (expected.precision, expected.recall)
    assert expected.k == 4 and expected.n_fake == 996
    assert ev.precision > 0.9 and ev.recall > 0.9
    assert {"precision", "recall"} <= set(ev.as_dict())


def test_evaluation_score_is_nan_with_too_few_finite_samples():
    model = SimpleNamespace(name="moons-plain", dataset="moons")
    samples = np.full((10, 2), np.inf, dtype=np.float32)
    samples[:5] = get_dataset("moons", 5, seed=12)
    ev = score(model, _result(samples), k=5)
    assert math.isnan(ev.precision) and math.isnan(ev.recall) and math.isnan(ev.kl_bits)
