"""The 2D datasets: the paper's four (docs/DESIGN.md#1-the-data), generated exactly as the
reference does it, and the class-conditional ones (`LABELLED`: points with their classes).

Every function takes (n, rng) and returns a float32 array of shape (n, 2). `get_dataset`
dispatches by name and seeds the generator, so the same (name, n, seed) always gives the same
points.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from functools import cache
from importlib import resources

import numpy as np

DEFAULT_N = 100_000
DEFAULT_SEED = 42  # the reference seeds every dataset with 42


def moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """make_moons without scikit-learn: arcs over an evenly spaced u, then noise, then shuffle."""
    return labelled_moons(n, rng)[0]


def labelled_moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """moons with each point's arc: 0 the upper (outer) arc, 1 the lower (inner) one. The same
    draws from `rng` as ever, so the points are the unlabelled dataset's, bit for bit."""
    n_outer = n // 2
    n_inner = n - n_outer
    u_out = np.linspace(0.0, np.pi, n_outer)
    u_in = np.linspace(0.0, np.pi, n_inner)
    outer = np.stack([np.cos(u_out), np.sin(u_out)], axis=1)
    inner = np.stack([1.0 - np.cos(u_in), 1.0 - np.sin(u_in) - 0.5], axis=1)
    points = np.concatenate([outer, inner])
    labels = np.concatenate([np.zeros(n_outer, np.int64), np.ones(n_inner, np.int64)])
    order = rng.permutation(n)
    points, labels = points[order], labels[order]
    points = points + rng.normal(scale=MOONS_NOISE, size=points.shape)
    return moons_forward(points).astype(np.float32), labels


MOONS_NOISE = 0.03


def moons_forward(points: np.ndarray) -> np.ndarray:
    """make_moons' coordinates -> the dataset's (x <- (x + 0.3) 2 - 1, y <- (y + 0.3) 3 - 1)."""
    return np.stack([(points[:, 0] + 0.3) * 2 - 1, (points[:, 1] + 0.3) * 3 - 1], axis=1)


def _halves(n: int, rng: np.random.Generator) -> np.ndarray:
    """n labels, half 0 and half 1 (0 gets the odd one out), in random order."""
    return rng.permutation(np.concatenate([np.zeros(n - n // 2), np.ones(n // 2)]).astype(np.int64))


# The "mixture of compactly supported distributions" of Chidambaram et al. (2024): two uniform
# boxes on either side of the origin, x in [1, 3] (right) or [-3, -1] (left), y in [-1, 1].
BOX_X, BOX_HALF_HEIGHT = (1.0, 3.0), 1.0
# Their Gaussian setting: two isotropic Gaussians at (+-1, 0), overlapping (2.9 sd apart).
GAUSSIAN_MEAN, GAUSSIAN_SD = 1.0, 0.7


def labelled_boxes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 uniform on [-3, -1] x [-1, 1], class 1 its mirror image [1, 3] x [-1, 1]."""
    labels = _halves(n, rng)
    x = rng.uniform(*BOX_X, n) * np.where(labels == 0, -1.0, 1.0)
    y = rng.uniform(-BOX_HALF_HEIGHT, BOX_HALF_HEIGHT, n)
    return np.stack([x, y], axis=1).astype(np.float32), labels


def labelled_gaussians(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 N((-1, 0), 0.7^2 I), class 1 N((1, 0), 0.7^2 I), equal weights."""
    labels = _halves(n, rng)
    centre = np.stack([np.where(labels == 0, -GAUSSIAN_MEAN, GAUSSIAN_MEAN), np.zeros(n)], 1)
    return (centre + rng.normal(scale=GAUSSIAN_SD, size=(n, 2))).astype(np.float32), labels


def line(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.uniform(-0.5, 0.5, n)
    y = rng.uniform(-1.0, 1.0, n)
    return (np.stack([x, y], axis=1) * 4).astype(np.float32)


def circle(n: int, rng: np.random.Generator) -> np.ndarray:
    """16 directions on a radius-3 circle, ~4% of the points at the origin (the reference's)."""
    x = np.round(rng.uniform(-0.5, 0.5, n) / 2, 1) * 2
    y = np.round(rng.uniform(-0.5, 0.5, n) / 2, 1) * 2
    norm = np.sqrt(x**2 + y**2) + 1e-10
    x, y = x / norm, y / norm
    theta = 2 * np.pi * rng.uniform(0, 1, n)
    r = rng.uniform(0, 0.03, n)
    x = x + r * np.cos(theta)
    y = y + r * np.sin(theta)
    return (np.stack([x, y], axis=1) * 3).astype(np.float32)


@cache
def dino_points() -> np.ndarray:
    """The 142 'dino' points of the Datasaurus Dozen, shipped inside the package."""
    text = resources.files("service.core.assets").joinpath("datasaurus_dino.tsv").read_text()
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    return np.array([[float(r["x"]), float(r["y"])] for r in rows], dtype=np.float64)


def dino(n: int, rng: np.random.Generator) -> np.ndarray:
    base = dino_points()
    ix = rng.integers(0, len(base), n)
    x = base[ix, 0] + rng.normal(size=n) * 0.15
    y = base[ix, 1] + rng.normal(size=n) * 0.15
    x = (x / 54 - 1) * 4
    y = (y / 48 - 1) * 4
    return np.stack([x, y], axis=1).astype(np.float32)


Labelled = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]
# The class-conditional datasets: points and each point's class, from one draw.
LABELLED: dict[str, Labelled] = {
    "boxes": labelled_boxes,
    "gaussians": labelled_gaussians,
    "moons": labelled_moons,
}
DATASETS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "boxes": lambda n, rng: labelled_boxes(n, rng)[0],
    "circle": circle,
    "dino": dino,
    "gaussians": lambda n, rng: labelled_gaussians(n, rng)[0],
    "line": line,
    "moons": moons,
}
# The paper's four (its Table 1 and the experiments built on it)
PAPER_DATASETS = ("circle", "dino", "line", "moons")


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")


def get_dataset(name: str, n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Return `n` points of dataset `name` as float32 (n, 2); deterministic for (name, n, seed)."""
    check_dataset_name(name)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return DATASETS[name](n, np.random.default_rng(seed))


def get_labelled(
    name: str, n: int = DEFAULT_N, seed: int = DEFAULT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """`get_dataset`'s points with each one's class (int64 (n,)), for the LABELLED datasets."""
    if name not in LABELLED:
        raise ValueError(f"dataset {name!r} has no classes; labelled: {sorted(LABELLED)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return LABELLED[name](n, np.random.default_rng(seed))


@cache
def reference_labels(name: str) -> np.ndarray:
    """The class of each of `reference_points(name)` (cached, read-only)."""
    labels = get_labelled(name)[1]
    labels.setflags(write=False)
    return labels


@cache
def reference_points(name: str) -> np.ndarray:
    """The 100,000 points the KL estimator compares samples with (cached, read-only)."""
    points = get_dataset(name)
    points.setflags(write=False)
    return points
