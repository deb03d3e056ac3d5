"""The classes of the labelled datasets: their names, supports and centres
(docs/DESIGN.md#7-metrics).

Each class has a support test, `inside(points) -> bool per point`, with the rule it applies in
`rule`: exact for the boxes, a disc holding 95% of a Gaussian's mass, a band around a moon's arc
(the arc is a curve; its noise has sd 0.03 before make_moons' scaling). The data's own fraction
inside is what a perfect sampler scores (`data_support_fraction`), so a sample's fraction reads
against it. Centres are the class's mean over the reference data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from service.core.data import (
    BOX_HALF_HEIGHT,
    BOX_X,
    GAUSSIAN_MEAN,
    GAUSSIAN_SD,
    LABELLED,
    MOONS_NOISE,
    reference_labels,
    reference_points,
)

# A Gaussian's support, stated: the disc around its mean holding 95% of its mass. In 2D the
# radius r has P(|z| <= r / sd) = 1 - exp(-r^2 / (2 sd^2)) = 0.95.
GAUSSIAN_MASS = 0.95
GAUSSIAN_RADIUS = GAUSSIAN_SD * math.sqrt(-2 * math.log(1 - GAUSSIAN_MASS))
# A moon's support: within this distance of its arc, in make_moons' coordinates (where the
# noise is isotropic): 0.1 = 3.3 noise sd.
MOON_BAND = 0.1
MOON_BAND_SD = MOON_BAND / MOONS_NOISE


@dataclass(frozen=True)
class ClassSpec:
    name: str
    inside: Callable[[np.ndarray], np.ndarray]  # (n, 2) -> (n,) bool: in the class's support
    rule: str


def _box(sign: float) -> Callable[[np.ndarray], np.ndarray]:
    def inside(p: np.ndarray) -> np.ndarray:
        x = sign * p[:, 0]
        return (x >= BOX_X[0]) & (x <= BOX_X[1]) & (np.abs(p[:, 1]) <= BOX_HALF_HEIGHT)

    return inside


def _disc(x0: float) -> Callable[[np.ndarray], np.ndarray]:
    def inside(p: np.ndarray) -> np.ndarray:
        return np.hypot(p[:, 0] - x0, p[:, 1]) <= GAUSSIAN_RADIUS

    return inside


def moon_arc_distance(points: np.ndarray, label: int) -> np.ndarray:
    """Distance to moon `label`'s arc in make_moons' coordinates (the dataset's, unscaled):
    arc 0 is the unit upper half circle about (0, 0), arc 1 the lower one about (1, 0.5)."""
    u = (points[:, 0] + 1) / 2 - 0.3
    v = (points[:, 1] + 1) / 3 - 0.3
    cx, cy, lo, hi = (0.0, 0.0, 0.0, math.pi) if label == 0 else (1.0, 0.5, math.pi, 2 * math.pi)
    dx, dy = u - cx, v - cy
    angle = np.mod(np.arctan2(dy, dx), 2 * math.pi)
    if label == 0:  # the upper arc's angles are [0, pi]; arctan2 gives (-pi, pi]
        angle = np.where(angle > 1.5 * math.pi, angle - 2 * math.pi, angle)
    on_arc = np.abs(np.hypot(dx, dy) - 1)
    ends = [(cx + math.cos(a), cy + math.sin(a)) for a in (lo, hi)]
    to_end = np.minimum(*(np.hypot(u - ex, v - ey) for ex, ey in ends))
    return np.where((angle >= lo) & (angle <= hi), on_arc, to_end)


def _band(label: int) -> Callable[[np.ndarray], np.ndarray]:
    def inside(p: np.ndarray) -> np.ndarray:
        return moon_arc_distance(p, label) <= MOON_BAND

    return inside


BOX_RULE = "exact: inside the box"
DISC_RULE = f"within {GAUSSIAN_RADIUS:.3f} of the mean (the disc of 95% of the mass)"
BAND_RULE = f"within {MOON_BAND} of the arc before scaling ({MOON_BAND_SD:.1f} noise sd)"
CLASS_SPECS: dict[str, tuple[ClassSpec, ...]] = {
    "boxes": (ClassSpec("left", _box(-1.0), BOX_RULE), ClassSpec("right", _box(1.0), BOX_RULE)),
    "gaussians": (
        ClassSpec("left", _disc(-GAUSSIAN_MEAN), DISC_RULE),
        ClassSpec("right", _disc(GAUSSIAN_MEAN), DISC_RULE),
    ),
    "moons": (ClassSpec("upper", _band(0), BAND_RULE), ClassSpec("lower", _band(1), BAND_RULE)),
}
assert set(CLASS_SPECS) == set(LABELLED)


def class_names(dataset: str) -> tuple[str, ...]:
    return tuple(c.name for c in CLASS_SPECS[dataset])


@cache
def class_reference(dataset: str, label: int) -> np.ndarray:
    """The reference points of one class (about 50,000; cached, read-only)."""
    points = reference_points(dataset)[reference_labels(dataset) == label]
    points.setflags(write=False)
    return points


@cache
def class_centre(dataset: str, label: int) -> np.ndarray:
    return class_reference(dataset, label).astype(np.float64).mean(axis=0)


def support_fraction(dataset: str, label: int, points: np.ndarray) -> float:
    return float(CLASS_SPECS[dataset][label].inside(points).mean())


@cache
def data_support_fraction(dataset: str, label: int) -> float:
    """The class's own data's fraction inside its support: 1 for the boxes, 0.95 for the
    Gaussians, about 0.999 for the moons. A perfect sampler's score."""
    return support_fraction(dataset, label, class_reference(dataset, label))


def mean_centre_distance(dataset: str, label: int, points: np.ndarray) -> float:
    return float(np.linalg.norm(points - class_centre(dataset, label), axis=1).mean())


def mean_shift_away(dataset: str, label: int, points: np.ndarray) -> float:
    """The points' mean offset from the class's centre along the line from the other class's
    centre to this one's (two classes): > 0 is away from the other class, Chidambaram et al.'s
    prediction for strong guidance. The class's own data scores 0 by construction."""
    centre = class_centre(dataset, label)
    axis = centre - class_centre(dataset, 1 - label)
    return float(((points - centre) @ (axis / np.linalg.norm(axis))).mean())
