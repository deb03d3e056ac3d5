"""Exact metrics of samples against a dataset's true density (docs/DESIGN.md#10-ground-truth).

- `mean_log_p_data`: the samples' mean exact log p_data (nats) with its standard error, beside
  the data's own, -H(p_data) (from the 100,000 reference points). Higher than the data's means
  the samples crowd the modes; lower, that they spread off them.
- `support_fraction`: on the compactly supported datasets (`line`, `boxes`), the fraction of
  samples where p_data > 0; the mean log p is over those.
- `energy_distance`: Szekely's energy distance D^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'| between
  (up to ENERGY_POINTS of) the samples and as many exact draws of the generator, as unbiased
  U-statistics. It is 0 exactly when the two distributions are equal, needs no density estimate
  or k (unlike the k-NN KL, whose floor went negative), and its noise on exact samples,
  `energy_distance_floor` (the mean |D^2| of independent exact sets of the same size), says what
  a perfect sampler reads. It is global: it needs a larger change to rise above its floor.
- `reverse_kl_bits`: KL(samples || p_data) = -H(samples) - E_samples[log p_data], the cross
  term exact and only the samples' entropy estimated (Kozachenko-Leonenko, k = ENTROPY_K):
  sensitive to the fine structure the energy distance misses (a blur of 0.05 lifts it above
  twice its floor on moons and dino), over the samples on the support.
  `reverse_kl_floor_bits` is its mean |reading| on exact sets of the same size (the entropy
  estimator's bias and noise).
- the mean and KL are harsh on sharp densities: one sample a unit off dino's 0.011-wide blobs
  weighs -4,000 nats. `median_log_p_data` and `off_data_fraction` (the samples below the data's
  own 0.1% quantile of log p_data; exact samples read 0.001) are the robust readings.
tests/core/test_exact_metrics.py checks each in both directions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma

from service.core.data import get_dataset, reference_points
from service.core.exact.datasets import exact_density

ENERGY_POINTS = 2000
ENERGY_SEED = 7_000_001  # the exact draws the samples are compared with (not the KL's reference)
FLOOR_PAIRS = 4
ENTROPY_K = 5
REVERSE_KL_POINTS = 10_000  # at most this many samples enter the entropy estimate
COMPACT = ("line", "boxes")


@dataclass(frozen=True)
class ExactScores:
    mean_log_p_data: float | None  # nats; over the samples where p_data > 0
    mean_log_p_data_se: float | None
    data_mean_log_p: float  # -H(p_data), nats: the data's own score
    data_mean_log_p_se: float
    support_fraction: float | None  # line and boxes only
    energy_distance: float | None
    energy_distance_floor: float
    reverse_kl_bits: float | None = None
    reverse_kl_floor_bits: float | None = None
    # robust to the few samples far off a sharp density (one sample 1 unit off dino's 0.011-wide
    # blobs weighs -4,000 nats in the mean): the median, and the fraction below the data's own
    # OFF_DATA_QUANTILE quantile of log p_data (exact samples: OFF_DATA_QUANTILE)
    median_log_p_data: float | None = None
    data_median_log_p: float | None = None
    off_data_fraction: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def log_p_data(dataset: str, points: np.ndarray) -> np.ndarray:
    """Exact log p_data per point (float64 nats; -inf off a compact support)."""
    x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    return exact_density(dataset).log_p(x, 1.0, 0.0).numpy()


def mean_and_se(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


OFF_DATA_QUANTILE = 0.001


@cache
def data_log_p_quantiles(dataset: str) -> tuple[float, float]:
    """The data's median log p_data and its OFF_DATA_QUANTILE quantile (100,000 points)."""
    values = log_p_data(dataset, reference_points(dataset))
    return float(np.median(values)), float(np.quantile(values, OFF_DATA_QUANTILE))


@cache
def data_mean_log_p(dataset: str) -> tuple[float, float]:
    """-H(p_data) in nats and its standard error, over the 100,000 reference points."""
    return mean_and_se(log_p_data(dataset, reference_points(dataset)))


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """D^2 by unbiased U-statistics (the within-set means leave out each point's self-pair)."""
    a = torch.as_tensor(np.asarray(x, dtype=np.float64))
    b = torch.as_tensor(np.asarray(y, dtype=np.float64))

    def within(p: torch.Tensor) -> float:
        n = len(p)
        return float(torch.cdist(p, p).sum()) / (n * (n - 1))

    return 2 * float(torch.cdist(a, b).mean()) - within(a) - within(b)


def exact_draws(dataset: str, n: int, seed: int = ENERGY_SEED) -> np.ndarray:
    return get_dataset(dataset, n, seed)


@cache
def energy_floor(dataset: str, n: int) -> float:
    """The mean |D^2| between independent exact sets of n points: a perfect sampler's reading."""
    values = [
        abs(
            energy_distance(
                exact_draws(dataset, n, 100 + 2 * i), exact_draws(dataset, n, 101 + 2 * i)
            )
        )
        for i in range(FLOOR_PAIRS)
    ]
    return float(np.mean(values))


def knn_entropy(points: np.ndarray, k: int = ENTROPY_K) -> float:
    """Kozachenko-Leonenko's entropy estimate in nats (2D): psi(n) - psi(k) + log pi +
    2 mean log r_k. Duplicate points (r_k = 0) are left out of the mean."""
    distances, _ = cKDTree(points).query(points, k + 1)
    r = distances[:, k]
    r = r[r > 0]
    return float(digamma(len(points)) - digamma(k) + math.log(math.pi) + 2 * np.log(r).mean())


def reverse_kl_bits(dataset: str, points: np.ndarray, log_p: np.ndarray | None = None) -> float:
    """KL(points' distribution || p_data) in bits, over the points on the support."""
    points = np.asarray(points, dtype=np.float64)[:REVERSE_KL_POINTS]
    log_p = log_p_data(dataset, points) if log_p is None else log_p[:REVERSE_KL_POINTS]
    keep = np.isfinite(log_p)
    return (-knn_entropy(points[keep]) - float(log_p[keep].mean())) / math.log(2)


@cache
def reverse_kl_floor(dataset: str, n: int) -> float:
    """Mean |reverse KL| of exact sets of n points (n capped at REVERSE_KL_POINTS)."""
    n = min(n, REVERSE_KL_POINTS)
    return float(
        np.mean([abs(reverse_kl_bits(dataset, exact_draws(dataset, n, 300 + i))) for i in range(4)])
    )


def exact_scores(dataset: str, samples: np.ndarray) -> ExactScores:
    """The exact metrics of `samples` (non-finite rows left out) against `dataset`."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples).all(axis=1)]
    data_mean, data_se = data_mean_log_p(dataset)
    if not len(samples):
        return ExactScores(None, None, data_mean, data_se, None, None, energy_floor(dataset, 2))
    log_p = log_p_data(dataset, samples)
    on_support = np.isfinite(log_p)
    mean = se = None
    if on_support.sum() > 1:
        mean, se = mean_and_se(log_p[on_support])
    reverse = floor = None
    if on_support.sum() > 2 * ENTROPY_K:
        reverse = reverse_kl_bits(dataset, samples, log_p)
        floor = reverse_kl_floor(dataset, int(min(on_support.sum(), REVERSE_KL_POINTS)))
    m = min(len(samples), ENERGY_POINTS)
    distance = energy_distance(samples[:m], exact_draws(dataset, m)) if m > 1 else None
    data_median, low = data_log_p_quantiles(dataset)
    return ExactScores(
        mean,
        se,
        data_mean,
        data_se,
        float(on_support.mean()) if dataset in COMPACT else None,
        distance,
        energy_floor(dataset, max(m, 2)),
        reverse,
        floor,
        float(np.median(log_p)),
        data_median,
        float(np.mean(log_p < low)),
    )


def forward_kl_bits(
    dataset: str, points: np.ndarray, model_log_p: np.ndarray
) -> tuple[float, float]:
    """KL(p_data || p_model) in bits with its standard error, from held-out data points and the
    model's log-density of each: the mean of log p_data - log p_model over the same points (paired,
    so the data's own spread cancels)."""
    diff = (log_p_data(dataset, points) - np.asarray(model_log_p, dtype=np.float64)) / math.log(2)
    diff = diff[np.isfinite(diff)]
    return mean_and_se(diff)
