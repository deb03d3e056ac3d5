"""The labelled datasets and their class geometry, each against a known answer."""

import math

import numpy as np
import pytest

from service.core import classes
from service.core.classifier import mean_reciprocal_probability
from service.core.data import (
    GAUSSIAN_MEAN,
    GAUSSIAN_SD,
    LABELLED,
    get_dataset,
    get_labelled,
    moons_forward,
)


@pytest.mark.parametrize("name", sorted(LABELLED))
def test_labelled_points_are_the_datasets_and_the_classes_halves(name):
    points, labels = get_labelled(name, 10_001, seed=3)
    np.testing.assert_array_equal(points, get_dataset(name, 10_001, seed=3))
    assert set(np.unique(labels)) == {0, 1} and abs(labels.mean() - 0.5) < 1e-3


@pytest.mark.parametrize("name", sorted(LABELLED))
def test_each_class_lies_in_its_own_support_and_not_the_other(name):
    for label in (0, 1):
        own = classes.class_reference(name, label)
        expected = {"boxes": 1.0, "gaussians": classes.GAUSSIAN_MASS, "moons": 0.999}[name]
        assert classes.data_support_fraction(name, label) == pytest.approx(expected, abs=0.004)
        other = classes.support_fraction(name, 1 - label, own)
        # the Gaussians overlap: P(other's 95% disc) for a point of this class, ~0.27
        assert other == (pytest.approx(0.27, abs=0.01) if name == "gaussians" else 0.0)


def test_the_gaussian_disc_holds_95_percent_in_closed_form():
    r = classes.GAUSSIAN_RADIUS / GAUSSIAN_SD
    assert 1 - math.exp(-(r**2) / 2) == pytest.approx(0.95, abs=1e-12)


def test_moon_arc_distance_of_known_points():
    # make_moons coordinates: on arc 0, its centre (distance 1), past an end (to the end point)
    raw = np.array([[0.0, 1.0], [-1.0, 0.0], [0.0, 0.0], [-1.0, -0.5], [1.0, -0.5], [0.0, 0.5]])
    points = moons_forward(raw)
    np.testing.assert_allclose(
        classes.moon_arc_distance(points, 0), [0, 0, 1, 0.5, 0.5, 0.5], atol=1e-9
    )
    # arc 1 is arc 0 turned about (0.5, 0.25): the centre (1, 0.5) is 1 away, (1, -0.5) on it
    np.testing.assert_allclose(
        classes.moon_arc_distance(moons_forward(np.array([[1.0, 0.5], [1.0, -0.5]])), 1),
        [1, 0],
        atol=1e-9,
    )


def test_centres_are_the_class_means():
    np.testing.assert_allclose(classes.class_centre("boxes", 1), [2, 0], atol=0.02)
    np.testing.assert_allclose(classes.class_centre("gaussians", 0), [-GAUSSIAN_MEAN, 0], atol=0.02)
    # the mean distance of a 2D Gaussian's points from its mean: sd sqrt(pi / 2)
    d = classes.mean_centre_distance("gaussians", 0, classes.class_reference("gaussians", 0))
    assert d == pytest.approx(GAUSSIAN_SD * math.sqrt(math.pi / 2), rel=0.01)


def bayes_posterior(points: np.ndarray, label: int) -> np.ndarray:
    """The two equal-weight Gaussians' exact p(label | x): logistic in x (equal covariances)."""
    sign = -1.0 if label == 0 else 1.0
    return 1 / (1 + np.exp(-sign * 2 * GAUSSIAN_MEAN * points[:, 0] / GAUSSIAN_SD**2))


def test_reciprocal_probability_of_class_data_under_the_exact_posterior_is_two():
    # E_{x ~ p(x|c)}[1 / p(c|x)] = integral of p(x) / p(c) = 1 / p(c) = 2 for overlapping classes.
    # Heavy-tailed (its variance is ~exp(4 mu^2 / sd^2) = 3,500): 2 million draws for 3%.
    rng = np.random.default_rng(0)
    own = np.stack([rng.normal(-GAUSSIAN_MEAN, GAUSSIAN_SD, 2_000_000), np.zeros(2_000_000)], 1)
    assert mean_reciprocal_probability(bayes_posterior(own, 0)) == pytest.approx(2.0, rel=0.03)
    # a sample that never leaves the class's side scores less: guidance's effect (Li & Jiao)
    far = own[own[:, 0] < -GAUSSIAN_MEAN]
    assert 1.0 < mean_reciprocal_probability(bayes_posterior(far, 0)) < 1.05
