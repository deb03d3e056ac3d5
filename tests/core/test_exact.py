"""The exact densities against independent computations: a grid's mass, finite differences,
scipy's Gaussians, closed-form entropies, and the quadratures against finer rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp as np_logsumexp
from scipy.stats import multivariate_normal

from service.core.data import MOONS_NOISE, get_dataset, get_labelled
from service.core.exact import datasets as D
from service.core.exact.datasets import exact_density
from service.core.exact.families import RING_NODES, Gaussians, Rings

F64 = torch.float64
ALL = sorted(D.BUILDERS)


def level(alpha_bar: float) -> tuple[float, float]:
    return math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)


def grid(half: float, count: int) -> tuple[torch.Tensor, float]:
    g = torch.linspace(-half, half, count, dtype=F64)
    xs, ys = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([xs.ravel(), ys.ravel()], 1), float(g[1] - g[0]) ** 2


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("alpha_bar", [0.99, 0.6])
def test_noised_density_integrates_to_one(name, alpha_bar):
    points, cell = grid(6.5, 401)
    mass = float(exact_density(name).log_p(points, *level(alpha_bar)).exp().sum() * cell)
    assert abs(mass - 1) < 1e-3


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("alpha_bar", [0.9999, 0.95, 0.3])
def test_score_is_the_gradient_of_log_p(name, alpha_bar):
    density = exact_density(name)
    a, s = level(alpha_bar)
    x = torch.cat(
        [
            torch.tensor(get_dataset(name, 100, seed=1), dtype=F64) * a,
            torch.randn(100, 2, generator=torch.Generator().manual_seed(2), dtype=F64) * 2,
        ]
    )
    score = density.score(x, a, s)
    h = 1e-6 * max(s, 1e-2)
    fd = torch.stack(
        [
            (density.log_p(x + h * e, a, s) - density.log_p(x - h * e, a, s)) / (2 * h)
            for e in torch.eye(2, dtype=F64)
        ],
        1,
    )
    rel = (score - fd).norm(dim=1) / (1 + fd.norm(dim=1))
    assert float(rel.max()) < 1e-4


def test_a_wrong_score_fails_the_finite_difference():
    """The check above can fail: a score off by 1% of itself is caught."""
    density = exact_density("dino")
    a, s = level(0.95)
    x = torch.randn(50, 2, dtype=F64)
    h = 1e-6
    fd = torch.stack(
        [
            (density.log_p(x + h * e, a, s) - density.log_p(x - h * e, a, s)) / (2 * h)
            for e in torch.eye(2, dtype=F64)
        ],
        1,
    )
    wrong = density.score(x, a, s) * 1.01
    assert float(((wrong - fd).norm(dim=1) / (1 + fd.norm(dim=1))).max()) > 1e-4


@pytest.mark.parametrize("name", ["gaussians", "dino"])
@pytest.mark.parametrize("alpha_bar", [1.0, 0.9, 0.2])
def test_mixtures_match_scipy(name, alpha_bar):
    a, s = level(alpha_bar)
    density = exact_density(name)
    x = np.random.default_rng(0).normal(size=(300, 2)) * 2
    if name == "gaussians":
        means, var = np.array([[-1.0, 0.0], [1.0, 0.0]]), np.full((2, 2), 0.49)
    else:
        means = D.dino_points() * np.array([4 / 54, 4 / 48]) - 4
        var = np.broadcast_to((0.15 * np.array([4 / 54, 4 / 48])) ** 2, means.shape)
    logs = [
        multivariate_normal(a * m, np.diag(a * a * v + s * s)).logpdf(x)
        for m, v in zip(means, var, strict=True)
    ]
    expected = np_logsumexp(np.stack(logs, 1), axis=1) - math.log(len(means))
    got = density.log_p(torch.tensor(x), a, s).numpy()
    assert np.allclose(got, expected, rtol=0, atol=1e-9)


# closed forms: a uniform box's -log area; the circle's disjoint kernels: the weights' entropy plus
# the kernel's log(2 pi R^2) - 1 (its radius uniform on [0, R], so E log r = log R - 1)
def circle_entropy() -> float:
    _, p = D.circle_directions()
    radius = D.CIRCLE_KERNEL * D.CIRCLE_RADIUS
    return float(-(p * np.log(p)).sum() + math.log(2 * math.pi * radius**2) - 1)


def grid_entropy(name: str) -> float:
    """-integral p log p on a grid fine enough for the data's narrowest feature."""
    points, cell = grid(5.0, 801)
    log_p = exact_density(name).log_p(points, 1.0, 0.0)
    p = log_p.exp()
    return float(-(p * torch.where(p > 0, log_p, 0.0)).sum() * cell)


@pytest.mark.parametrize(
    "name, entropy",
    [
        ("line", lambda: math.log(32)),
        ("boxes", lambda: math.log(8)),
        ("circle", circle_entropy),
        ("gaussians", lambda: grid_entropy("gaussians")),
        ("moons", lambda: grid_entropy("moons")),
    ],
)
def test_data_mean_log_p_is_minus_the_entropy(name, entropy):
    points = torch.tensor(get_dataset(name, 40_000, seed=11), dtype=F64)
    log_p = exact_density(name).log_p(points, 1.0, 0.0)
    assert torch.isfinite(log_p).all()
    se = float(log_p.std()) / math.sqrt(len(log_p))
    assert abs(float(log_p.mean()) + entropy()) < 4 * se + 2e-3


def test_moons_quadrature_against_the_generators_points():
    """The arc's quadrature against the generator's own 50,000 points per arc, on its data:
    within 0.002 nats (the discrete mixture's ends differ from the continuous arc's by that)."""
    density = exact_density("moons")
    x = torch.tensor(get_dataset("moons", 300, seed=4), dtype=F64)
    u = np.linspace(0, math.pi, 50_000)
    var = (MOONS_NOISE * np.array([2.0, 3.0])) ** 2
    for a, s in [(1.0, 0.0), level(0.9999), level(0.9)]:
        parts = []
        for c in (0, 1):
            g = Gaussians(
                D._t(D.moon_arc(c, u)),
                D._t(np.broadcast_to(var, (len(u), 2))),
                torch.full((len(u),), -math.log(len(u)), dtype=F64),
            )
            parts.append(torch.cat([g.terms(x[i : i + 100], a, s) for i in range(0, len(x), 100)]))
        reference = torch.logsumexp(torch.cat(parts, 1) + math.log(0.5), 1)
        assert float((density.log_p(x, a, s) - reference).abs().max()) < 2e-3


def ring_reference(family: Rings, x: np.ndarray, a: float, s: float) -> np.ndarray:
    """The same integral by a 40,000-node midpoint rule over the whole radius (numpy, no
    window), per point: the independent check of the windowed rule."""
    top = a * family.radius
    r = (np.arange(40_000) + 0.5) / 40_000 * top
    out = []
    for c, log_w in zip(family.centres.numpy(), family.log_weights.numpy(), strict=True):
        d = np.linalg.norm(x - a * c, axis=1)[:, None]
        z = d * r / s**2
        from scipy.special import i0e

        log_g = -((d - r) ** 2) / (2 * s * s) + np.log(i0e(z)) - math.log(2 * math.pi * s * s)
        out.append(log_w + np_logsumexp(log_g, axis=1) - math.log(len(r)))
    return np_logsumexp(np.stack(out, 1), axis=1)


@pytest.mark.parametrize("alpha_bar", [1 - 0.002**2, 1 - 0.01**2, 0.99, 0.5])
def test_ring_window_against_a_full_rule(alpha_bar):
    """The windowed rule (RING_NODES nodes) against a 40,000-node rule over the whole radius, on
    the data and up to ~10 noise sd beyond it: within 1e-6 nats."""
    family = exact_density("circle").classes[0][0]
    a, s = level(alpha_bar)
    rng = np.random.default_rng(3)
    x = get_dataset("circle", 30, seed=3).astype(np.float64) * a
    x = np.concatenate([x, x + rng.normal(size=x.shape) * 5 * s])
    windowed = torch.logsumexp(family.terms(torch.tensor(x), a, s), 1).numpy()
    assert RING_NODES < 200
    assert np.abs(windowed - ring_reference(family, x, a, s)).max() < 1e-6


def test_class_conditionals_mix_to_the_marginal_and_the_posterior_is_exact():
    density = exact_density("gaussians")
    a, s = level(0.8)
    x = torch.randn(200, 2, dtype=F64) * 2
    per_class = torch.stack([density.log_p(x, a, s, labels=c) for c in (0, 1)], 1)
    assert torch.allclose(torch.logsumexp(per_class + math.log(0.5), 1), density.log_p(x, a, s))
    assert torch.allclose(density.log_p(x, a, s, labels=2), density.log_p(x, a, s))
    v = a * a * 0.49 + s * s
    logit = 2 * a * 1.0 * x[:, 0] / v  # log p(right | x) - log p(left | x)
    post = density.log_posterior(x, a, s).exp()
    assert torch.allclose(post[:, 1], torch.sigmoid(logit), atol=1e-12)


def test_boxes_posterior_is_certain_on_the_data():
    density = exact_density("boxes")
    x, labels = get_labelled("boxes", 500, seed=0)
    post = density.log_posterior(torch.tensor(x, dtype=F64), 1.0, 0.0).exp()
    assert (post.argmax(1).numpy() == labels).all() and float(post.max(1).values.min()) == 1.0


@pytest.mark.parametrize("name", ALL)
def test_a_rows_values_do_not_depend_on_its_batch(name):
    """Bit for bit: rows alone, and among rows of other noise levels and classes."""
    density = exact_density(name)
    x = torch.randn(40, 2, dtype=F64) * 2
    a = torch.tensor([0.99, 0.7] * 20, dtype=F64)
    s = (1 - a**2).sqrt()
    labels = torch.tensor([0, 1, 2, 1] * 10) if density.num_classes else None
    together = density.score(x, a, s, labels)
    for i in (0, 7, 33):
        alone = density.score(
            x[i : i + 1], a[i], s[i], None if labels is None else labels[i : i + 1]
        )
        assert torch.equal(alone[0], together[i])


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="offered"):
        exact_density("spiral")


def test_ring_clean_density_is_the_kernel():
    family = Rings(torch.zeros(1, 2, dtype=F64), 0.5, torch.zeros(1, dtype=F64))
    x = torch.tensor([[0.25, 0.0], [0.0, 0.6]], dtype=F64)
    got = family.terms(x, 1.0, 0.0)[:, 0]
    assert math.isclose(float(got[0]), -math.log(2 * math.pi * 0.5 * 0.25))
    assert got[1] == -math.inf
