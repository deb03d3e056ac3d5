"""The energy parameterisation (docs/DESIGN.md#3-the-denoiser-and-objectives): one scalar
E(x, t), the model's log-density of x_t up to a constant per t, whose gradient is the model's
score by construction.

E(x, t) = f(x, t) / sigma_t - |x|^2 / (2 v_t), with f the network's single output,
sigma_t = sqrt(1 - ab_t) and v_t = ab_t * DATA_STD^2 + sigma_t^2, the variance of x_t if the
data were N(0, DATA_STD^2 I). The Gaussian term makes exp(E) integrable (f is bounded: its
inputs are sines and cosines) and is the exact answer for Gaussian data; the 1/sigma_t puts f's
gradient on the scale of the noise (as NVlabs/edm2's toy_example.py preconditions its log p).
The noise prediction is eps = -sigma_t grad_x E = -grad_x f + (sigma_t / v_t) x, trained with
the plain noise MSE (denoising score matching), which is bounded below, unlike the paper's eq. 4.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from service.core.network import Denoiser
from service.core.schedule import Schedule

DATA_STD = 2.0  # the four datasets' coordinates have standard deviations of 0.9 to 2.3


def gaussian_coef(schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Per timestep: (1 / sigma_t, 1 / v_t), float32, on the schedule's device."""
    ab = schedule.alpha_bar
    sigma2 = 1 - ab
    return sigma2.rsqrt().float(), (1 / (ab * DATA_STD**2 + sigma2)).float()


def energy(network: Denoiser, schedule: Schedule, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E(x, t): (B, 2), (B,) -> (B,). Differentiable in x and in the weights."""
    inv_sigma, inv_v = (at(c.to(x.dtype), t) for c in gaussian_coef(schedule))
    f = network(x, t)[:, -1]
    return f * inv_sigma - 0.5 * (x * x).sum(-1) * inv_v


def at(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A per-timestep table at integer t, or linearly interpolated at a continuous t (the ODE
    likelihood's, which lies between the schedule's steps)."""
    if not t.is_floating_point():
        return table[t]
    t = t.clamp(0, len(table) - 1)
    low = t.floor().long().clamp(max=len(table) - 2)
    w = (t - low).to(table.dtype)
    return table[low] * (1 - w) + table[low + 1] * w


def energy_eps(
    network: Denoiser, schedule: Schedule, x: torch.Tensor, t: torch.Tensor, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps_hat = -sigma_t grad_x E, E), by autograd; create_graph for training (the loss then
    needs a double backward through the network)."""
    with torch.enable_grad():
        if not x.requires_grad:  # else the caller differentiates eps in x further
            x = x.detach().requires_grad_(True)
        e = energy(network, schedule, x, t)
        (grad,) = torch.autograd.grad(e.sum(), x, create_graph=create_graph)
    sigma = at(schedule.sqrt_one_minus_alpha_bar.to(x.dtype), t)[:, None]
    return -sigma * grad, e


@dataclass(frozen=True)
class GridNormalizer:
    """log Z of exp(E(x, t)) over a rectangle: the energy model's normaliser in 2D."""

    log_z: float
    t: int
    low: tuple[float, float]
    high: tuple[float, float]
    spacing: float
    seconds: float


def data_box(points: np.ndarray, margin: float = 0.75) -> tuple[tuple, tuple]:
    """The data's bounding box widened by `margin` on every side."""
    low, high = points.min(axis=0) - margin, points.max(axis=0) + margin
    return (float(low[0]), float(low[1])), (float(high[0]), float(high[1]))


@torch.no_grad()
def grid_normalizer(
    network: Denoiser,
    schedule: Schedule,
    low: tuple[float, float] = (-6.0, -6.0),
    high: tuple[float, float] = (6.0, 6.0),
    t: int = 0,
    spacing: float = 0.01,
    batch: int = 65_536,
) -> GridNormalizer:
    """log Z = log of the sum over the grid's cells of exp(E) times the cell's area (the midpoint
    rule on the rectangle [low, high]).

    E is a density only where the model was trained: its gradient is fitted where x_t has mass,
    and away from it the network's value is free (a shipped model has a spurious peak of
    E(x, 0) ~ 4e4 at (-4.3, -3.9), far from the moons). So the rectangle should cover the data
    (`data_box`) and not much more: the normaliser is then that of the model on the data's
    neighbourhood."""
    start = time.perf_counter()
    device = next(network.parameters()).device
    axes = []
    for lo, hi in zip(low, high, strict=True):
        cells = max(1, round((hi - lo) / spacing))
        edges = torch.linspace(lo, hi, cells + 1, dtype=torch.float64)
        axes.append(((edges[:-1] + edges[1:]) / 2).float())
    gx, gy = torch.meshgrid(axes[0], axes[1], indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    parts = []
    for i in range(0, len(grid), batch):
        x = grid[i : i + batch].to(device)
        parts.append(energy(network, schedule, x, torch.full((len(x),), t, device=device)))
    e = torch.cat(parts).double()
    cell = (high[0] - low[0]) / len(axes[0]) * (high[1] - low[1]) / len(axes[1])
    log_z = float(torch.logsumexp(e, 0) + math.log(cell))
    return GridNormalizer(log_z, t, low, high, spacing, time.perf_counter() - start)


@torch.no_grad()
def energy_log_density(
    network: Denoiser, schedule: Schedule, points: torch.Tensor, norm: GridNormalizer
) -> torch.Tensor:
    """log p(x_t) = E(x, t) - log Z, nats, float64 (B,)."""
    t = torch.full((len(points),), norm.t, device=points.device)
    return energy(network, schedule, points, t).double() - norm.log_z
