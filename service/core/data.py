"""The four 2D datasets of SPEC.md ("Data"), generated exactly as the reference does it.

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
    n_outer = n // 2
    n_inner = n - n_outer
    u_out = np.linspace(0.0, np.pi, n_outer)
    u_in = np.linspace(0.0, np.pi, n_inner)
    outer = np.stack([np.cos(u_out), np.sin(u_out)], axis=1)
    inner = np.stack([1.0 - np.cos(u_in), 1.0 - np.sin(u_in) - 0.5], axis=1)
    points = np.concatenate([outer, inner])
    points = points[rng.permutation(n)]
    points = points + rng.normal(scale=0.03, size=points.shape)
    points[:, 0] = (points[:, 0] + 0.3) * 2 - 1
    points[:, 1] = (points[:, 1] + 0.3) * 3 - 1
    return points.astype(np.float32)


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


DATASETS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "circle": circle,
    "dino": dino,
    "line": line,
    "moons": moons,
}


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")


def get_dataset(name: str, n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Return `n` points of dataset `name` as float32 (n, 2); deterministic for (name, n, seed)."""
    check_dataset_name(name)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return DATASETS[name](n, np.random.default_rng(seed))


@cache
def reference_points(name: str) -> np.ndarray:
    """The 100,000 points the KL estimator compares samples with (cached, read-only)."""
    points = get_dataset(name)
    points.setflags(write=False)
    return points
