"""Improved precision and recall of a sample against its data (Kynkanniemi et al., 2019).

Kynkanniemi, Karras, Laine, Lehtinen and Aila, "Improved Precision and Recall Metric for
Assessing Generative Models", NeurIPS 2019. Around each real point put a ball whose radius is
the distance to its k-th nearest *other* real point; the union of these balls estimates the
data manifold. Precision is the fraction of generated points inside at least one real ball
(distance <= radius): how much of the sample is realistic. Recall swaps the roles, with balls
around the generated points: how much of the data the sample covers.

Why: KL alone is one number that mixes the two failures; a sampler that drops a mode or
piles up in part of the data shows up as recall (or precision) well below 1, not only as KL.

Convention: the two sets have the same size (the radii, and so both numbers, shrink as a set
grows), so callers subsample the larger one; `coverage_against_data` does that for the
service's reference data. `precision_recall` itself accepts different sizes.

Distances are Euclidean. Membership is exact: a point is inside the union when *some* ball
contains it, which is not the same as its nearest centre's ball containing it (a farther
centre can have a larger ball).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
from scipy.spatial import cKDTree

from service.core.data import reference_points

DEFAULT_K = 5


@dataclass(frozen=True)
class Coverage:
    precision: float  # fraction of fake points inside some real ball
    recall: float  # fraction of real points inside some fake ball
    k: int
    n_real: int
    n_fake: int


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean |a_i - b_i|; the one formula for radii and memberships alike."""
    return np.sqrt(((a - b) ** 2).sum(axis=1))


def _radii(points: np.ndarray, tree: cKDTree, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest other point (the point itself is first)."""
    _, idx = tree.query(points, k=[k + 1], workers=-1)
    return _distances(points, points[idx[:, 0]])


def _covered(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, tree: cKDTree):
    """Boolean per query: inside at least one ball (centres[i], radii[i]), exactly.

    The nearest centre settles most queries that are inside. The rest are checked against every
    centre that could hold them, level by level: centres are grouped by radius within a factor
    of 2, and a query is compared only with the centres of a group within that group's largest
    radius. Grouping keeps the candidates few even when a handful of outliers have huge balls
    (one search at the overall largest radius would compare each query with most centres).
    """
    _, nearest = tree.query(queries, k=1, workers=-1)
    covered = _distances(queries, centres[nearest]) <= radii[nearest]
    # a zero radius holds only a point at distance 0, which the nearest-centre test has found
    positive = np.flatnonzero(radii > 0)
    levels = np.floor(np.log2(radii[positive])).astype(np.int64)
    for level in np.unique(levels):
        todo = np.flatnonzero(~covered)
        if len(todo) == 0:
            break
        group = positive[levels == level]
        reach = radii[group].max() * (1 + 1e-9)  # a superset: the exact test follows
        hits = cKDTree(centres[group]).query_ball_point(
            queries[todo], r=reach, workers=-1, return_sorted=False
        )
        counts = np.fromiter(map(len, hits), dtype=np.intp, count=len(hits))
        if counts.sum() == 0:
            continue
        q = np.repeat(todo, counts)
        c = group[np.fromiter(chain.from_iterable(hits), dtype=np.intp, count=counts.sum())]
        inside = _distances(queries[q], centres[c]) <= radii[c]
        covered[q[inside]] = True
    return covered


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = DEFAULT_K) -> Coverage:
    """Improved precision and recall of `fake` (m, d) against `real` (n, d), both finite.

    Equal sizes are the convention (subsample the larger set first); different sizes are
    accepted. Raises ValueError on non-finite rows (drop them first), on k < 1 and on fewer
    than k + 1 rows in either set.
    """
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need two (n, d) arrays of the same d, got {real.shape} and {fake.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if min(len(real), len(fake)) < k + 1:
        raise ValueError(
            f"need at least k + 1 = {k + 1} rows in each set, got {len(real)} real "
            f"and {len(fake)} fake"
        )
    if not (np.isfinite(real).all() and np.isfinite(fake).all()):
        raise ValueError("non-finite rows: drop them first (kl.finite_rows)")
    real_tree, fake_tree = cKDTree(real), cKDTree(fake)
    real_radii = _radii(real, real_tree, k)
    fake_radii = _radii(fake, fake_tree, k)
    precision = _covered(fake, real, real_radii, real_tree).mean()
    recall = _covered(real, fake, fake_radii, fake_tree).mean()
    return Coverage(float(precision), float(recall), k, len(real), len(fake))


def coverage_against_data(
    dataset: str, samples: np.ndarray, k: int = DEFAULT_K, seed: int = 0
) -> Coverage:
    """Precision and recall of `samples` against `dataset`'s reference points, equal sizes.

    Drops the non-finite rows of `samples`, then draws as many reference points, without
    replacement, with numpy's default_rng(seed) (deterministic for the same inputs). If there
    are more finite samples than reference points (100,000), the samples are subsampled
    instead. Raises ValueError when fewer than k + 1 finite rows remain.
    """
    samples = np.asarray(samples)
    finite = samples[np.isfinite(samples).all(axis=1)]
    data = reference_points(dataset)
    rng = np.random.default_rng(seed)
    if len(finite) <= len(data):
        real = data[rng.choice(len(data), size=len(finite), replace=False)]
    else:
        real = data
        finite = finite[rng.choice(len(finite), size=len(data), replace=False)]
    return precision_recall(real, finite, k)
