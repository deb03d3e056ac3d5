"""Each dataset's exact density, derived from its generator in core/data.py (not from samples).

- `line`: uniform on [-2, 2] x [-4, 4] (U(-0.5, 0.5) x U(-1, 1), times 4).
- `boxes`: class 0 uniform on [-3, -1] x [-1, 1], class 1 on [1, 3] x [-1, 1], half each.
- `gaussians`: N((-+1, 0), 0.7^2 I), half each.
- `dino`: the 142 points, each with weight 1/142, plus N(0, 0.15^2) per axis, then the affine
  map x -> (x / 54 - 1) 4, y -> (y / 48 - 1) 4: axis-aligned Gaussians.
- `moons`: make_moons' arcs, u evenly spaced on [0, pi] with half the points on each, plus
  N(0, 0.03^2), then x -> (x + 0.3) 2 - 1, y -> (y + 0.3) 3 - 1. The generator's 50,000 points
  per arc are spaced pi / 50,000 in u, 1/300 of the noise's width in u, so the density is the
  continuous arc's: a Gauss-Legendre quadrature over u (MOON_PANELS panels of MOON_NODES
  nodes per arc), each node an axis-aligned Gaussian of sd (0.06, 0.09).
- `circle`: x, y = round(U(-0.5, 0.5) / 2, 1) 2 take -0.4, -0.2, 0, 0.2, 0.4 with
  probability 1/5 each; (x, y) / |(x, y)| gives 16 directions (the 8 whose pairs are (0.2, 0.2)-
  and (0.4, 0.4)-like twice as likely as the 8 off-axis ones) and the origin (1/25, where the
  norm is 1e-10); then a kernel of radius uniform on [0, 0.03] and a uniform angle; all times 3.

Points are generated as float32; these densities are of the float64 draws before that cast.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import cache

import numpy as np
import torch

from service.core.data import (
    BOX_HALF_HEIGHT,
    BOX_X,
    DATASETS,
    GAUSSIAN_MEAN,
    GAUSSIAN_SD,
    MOONS_NOISE,
    dino_points,
)
from service.core.exact.density import ExactDensity
from service.core.exact.families import Boxes, Gaussians, Rings

F64 = torch.float64
HALF = torch.tensor([math.log(0.5), math.log(0.5)], dtype=F64)
ONE = torch.zeros(1, dtype=F64)

# moons: per arc, MOON_PANELS equal panels of u in [0, pi], MOON_NODES Gauss-Legendre nodes
# each; tests/core/test_exact.py checks it against the generator's 50,000-point mixture
MOON_PANELS = 32
MOON_NODES = 6
DINO_NOISE = 0.15
CIRCLE_RADIUS = 3.0
CIRCLE_KERNEL = 0.03


def _t(values) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=F64)


def _uniform_log_weights(k: int) -> torch.Tensor:
    return torch.full((k,), -math.log(k), dtype=F64)


def line() -> ExactDensity:
    box = Boxes(_t([[-2.0, -4.0]]), _t([[2.0, 4.0]]), ONE.clone())
    return ExactDensity("line", ((box,),), ONE.clone(), "uniform on [-2, 2] x [-4, 4]")


def boxes() -> ExactDensity:
    lo, hi = BOX_X
    h = BOX_HALF_HEIGHT
    left = Boxes(_t([[-hi, -h]]), _t([[-lo, h]]), ONE.clone())
    right = Boxes(_t([[lo, -h]]), _t([[hi, h]]), ONE.clone())
    return ExactDensity(
        "boxes",
        ((left,), (right,)),
        HALF.clone(),
        "left: uniform on [-3, -1] x [-1, 1], right: on [1, 3] x [-1, 1], half each",
    )


def gaussians() -> ExactDensity:
    var = _t([[GAUSSIAN_SD**2, GAUSSIAN_SD**2]])
    classes = tuple(
        (Gaussians(_t([[sign * GAUSSIAN_MEAN, 0.0]]), var, ONE.clone()),) for sign in (-1, 1)
    )
    return ExactDensity("gaussians", classes, HALF.clone(), "N((-1, 0), 0.49 I), N((1, 0), 0.49 I)")


def dino() -> ExactDensity:
    base = dino_points()
    scale = np.array([4 / 54, 4 / 48])
    means = (base * scale) - 4
    var = np.broadcast_to((DINO_NOISE * scale) ** 2, means.shape)
    family = Gaussians(_t(means), _t(var), _uniform_log_weights(len(means)))
    return ExactDensity(
        "dino", ((family,),), ONE.clone(), f"{len(means)} axis-aligned Gaussians, equal weights"
    )


def moon_arc(label: int, u: np.ndarray) -> np.ndarray:
    """Arc `label`'s points at u, in the dataset's coordinates (after make_moons' affine map)."""
    if label == 0:
        p = np.stack([np.cos(u), np.sin(u)], 1)
    else:
        p = np.stack([1.0 - np.cos(u), 1.0 - np.sin(u) - 0.5], 1)
    return np.stack([(p[:, 0] + 0.3) * 2 - 1, (p[:, 1] + 0.3) * 3 - 1], 1)


def moon_nodes(panels: int = MOON_PANELS, nodes: int = MOON_NODES) -> tuple[np.ndarray, np.ndarray]:
    """u in [0, pi] and weights summing to 1: composite Gauss-Legendre."""
    xi, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.linspace(0.0, math.pi, panels + 1)
    half = (edges[1:] - edges[:-1]) / 2
    mid = (edges[1:] + edges[:-1]) / 2
    u = (mid[:, None] + half[:, None] * xi[None]).ravel()
    weights = (half[:, None] * w[None]).ravel() / math.pi
    return u, weights


def moon_family(label: int, max_panels: int = MOON_PANELS, nodes: int = MOON_NODES) -> Gaussians:
    """Arc `label` as a quadrature whose panel count follows the noise (families.Gaussians)."""
    var = (MOONS_NOISE * np.array([2.0, 3.0])) ** 2

    @cache
    def curve(panels: int):
        u, weights = moon_nodes(panels, nodes)
        return _t(moon_arc(label, u)), _t(np.broadcast_to(var, (len(u), 2))), _t(np.log(weights))

    means, variances, log_w = curve(max_panels)
    return Gaussians(means, variances, log_w, curve, MOON_SPEED, 4, max_panels)


# the arcs' largest speed |d point / du| after the affine map: (sin u, cos u) scaled by (2, 3)
MOON_SPEED = 3.0


def moons(max_panels: int = MOON_PANELS, nodes: int = MOON_NODES) -> ExactDensity:
    return ExactDensity(
        "moons",
        tuple((moon_family(c, max_panels, nodes),) for c in (0, 1)),
        HALF.clone(),
        f"two arcs plus N(0, diag(0.06^2, 0.09^2)); u by Gauss-Legendre, up to {max_panels} "
        f"panels of {nodes} nodes per arc (fewer where the noise is broad)",
    )


def circle_directions() -> tuple[np.ndarray, np.ndarray]:
    """The generator's directions (unit vectors; the origin as (0, 0)) and their probabilities,
    enumerated from its rounding: each of the 25 grid pairs has probability 1/25."""
    grid = np.array([-0.4, -0.2, 0.0, 0.2, 0.4])
    found: dict[tuple[float, float], float] = {}
    for x, y in itertools.product(grid, grid):
        norm = math.sqrt(x * x + y * y) + 1e-10
        key = (round(x / norm, 9), round(y / norm, 9))
        found[key] = found.get(key, 0.0) + 1 / 25
    keys = sorted(found)
    return np.array(keys), np.array([found[k] for k in keys])


def circle() -> ExactDensity:
    directions, probability = circle_directions()
    family = Rings(
        _t(directions * CIRCLE_RADIUS), CIRCLE_KERNEL * CIRCLE_RADIUS, _t(np.log(probability))
    )
    return ExactDensity(
        "circle",
        ((family,),),
        ONE.clone(),
        f"{len(directions)} points (16 directions at radius 3 and the origin) with a radius-0.09 "
        "kernel, radius uniform; noised by Gauss-Legendre over the radius",
    )


BUILDERS: dict[str, Callable[[], ExactDensity]] = {
    "boxes": boxes,
    "circle": circle,
    "dino": dino,
    "gaussians": gaussians,
    "line": line,
    "moons": moons,
}
assert set(BUILDERS) == set(DATASETS)


@cache
def exact_density(dataset: str) -> ExactDensity:
    """The dataset's exact density on the CPU (cached; `.to(device)` for another)."""
    if dataset not in BUILDERS:
        raise ValueError(f"no exact density for {dataset!r}; offered: {sorted(BUILDERS)}")
    return BUILDERS[dataset]()
