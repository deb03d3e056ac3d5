"""The k-nearest-neighbour KL estimator of docs/DESIGN.md#7-metrics, as NPEET's `kldiv` computes it.

KL(p || q) = [ln m - ln(n - 1) + d (mean ln nu_k - mean ln rho_k)] / ln 2 bits, with x ~ p
(n points, the data), x' ~ q (m points, the samples), Chebyshev distances, rho_k(i) the k-th
neighbour of x_i in x excluding itself, nu_k(i) the k-th neighbour of x_i in x'.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

DEFAULT_K = 5


def _kth_distance(tree: cKDTree, points: np.ndarray, k: int) -> np.ndarray:
    distances, _ = tree.query(points, k=[k], p=np.inf, workers=-1)
    return distances[:, 0]


def mean_log_rho(x: np.ndarray, k: int = DEFAULT_K) -> float:
    """mean ln rho_k over x: the half of the estimate that depends on the data alone.

    Callers that compare many sample sets with one reference set compute it once.
    """
    x = np.asarray(x, dtype=np.float64)
    return float(np.log(_kth_distance(cKDTree(x), x, k + 1)).mean())  # k + 1: x_i itself is first


def kl_divergence_bits(
    x: np.ndarray, x_prime: np.ndarray, k: int = DEFAULT_K, x_mean_log_rho: float | None = None
) -> float:
    """KL(data || samples) in bits. x (n, d) data, x_prime (m, d) finite samples; k < min(n, m).

    `x_mean_log_rho` is `mean_log_rho(x, k)` when the caller has it cached.
    """
    x = np.asarray(x, dtype=np.float64)
    x_prime = np.asarray(x_prime, dtype=np.float64)
    if x.ndim != 2 or x_prime.ndim != 2 or x.shape[1] != x_prime.shape[1]:
        raise ValueError(f"need two (n, d) arrays of the same d, got {x.shape} and {x_prime.shape}")
    if not np.isfinite(x_prime).all():
        raise ValueError("x_prime has non-finite rows: count and drop them first (finite_rows)")
    n, d = x.shape
    m = len(x_prime)
    if not 1 <= k < min(n, m):
        raise ValueError(f"k must be in [1, {min(n, m) - 1}] for n={n}, m={m}; got {k}")
    if x_mean_log_rho is None:
        x_mean_log_rho = mean_log_rho(x, k)
    nu = _kth_distance(cKDTree(x_prime), x, k)
    const = math.log(m) - math.log(n - 1)
    return float((const + d * (np.log(nu).mean() - x_mean_log_rho)) / math.log(2))


def finite_rows(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """-> (the finite rows, how many rows were dropped)."""
    keep = np.isfinite(samples).all(axis=1)
    return samples[keep], int((~keep).sum())
