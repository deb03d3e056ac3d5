import math

import numpy as np
import pytest

from service.core.kl import finite_rows, kl_divergence_bits, mean_log_rho

# kNN estimates scatter at finite n: at n = m = 10,000 in 2D with k = 5 we measured errors of up
# to 0.053 bits on these pairs over seeds 0-4, and up to 0.022 bits for identical distributions.
TOLERANCE_BITS = 0.08


def gaussian_kl_bits(mu_p, s_p, mu_q, s_q, d=2):
    """KL(N(mu_p, s_p^2 I) || N(mu_q, s_q^2 I)) in bits."""
    diff = np.sum((np.asarray(mu_p) - np.asarray(mu_q)) ** 2)
    nats = 0.5 * (d * s_p**2 / s_q**2 + diff / s_q**2 - d + 2 * d * math.log(s_q / s_p))
    return nats / math.log(2)


@pytest.mark.parametrize("mu_q, s_q", [((0.5, 0.0), 1.0), ((0.0, 0.0), 1.5), ((1.0, -1.0), 1.2)])
def test_two_gaussians_match_the_closed_form(mu_q, s_q):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10_000, 2))
    xp = rng.normal(size=(10_000, 2)) * s_q + mu_q
    expected = gaussian_kl_bits((0, 0), 1.0, mu_q, s_q)
    assert abs(kl_divergence_bits(x, xp) - expected) < TOLERANCE_BITS


def test_same_distribution_is_near_zero():
    rng = np.random.default_rng(1)
    x, xp = rng.normal(size=(10_000, 2)), rng.normal(size=(10_000, 2))
    assert abs(kl_divergence_bits(x, xp)) < 0.04


def test_cached_reference_term_gives_the_same_value():
    rng = np.random.default_rng(2)
    x, xp = rng.uniform(size=(5000, 2)), rng.normal(size=(3000, 2))
    assert kl_divergence_bits(x, xp, 5, mean_log_rho(x, 5)) == kl_divergence_bits(x, xp, 5)


def test_input_checks_and_nonfinite_rows():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="k must be"):
        kl_divergence_bits(np.random.rand(10, 2), np.random.rand(10, 2), k=10)
    with pytest.raises(ValueError, match="non-finite"):
        kl_divergence_bits(x, np.array([[np.nan, 0.0]] * 10))
    kept, dropped = finite_rows(np.array([[0.0, 1.0], [np.inf, 0.0], [np.nan, 1.0]]))
    assert kept.shape == (1, 2) and dropped == 2
