"""Noise schedules (docs/DESIGN.md#2-schedules): every coefficient precomputed once, read by index.

All tensors have shape (T,) and are indexed by a per-row timestep tensor t of shape (B,).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from service.core.spacing import DEFAULT_SPACING, kept_timesteps


@dataclass(frozen=True)
class ScheduleConfig:
    num_timesteps: int = 100
    kind: str = "linear"  # see BETA_SCHEDULES
    beta_start: float = 1e-4  # linear only
    beta_end: float = 0.02  # linear only
    cosine_offset: float = 0.008  # cosine only (Nichol & Dhariwal's s)
    max_beta: float = 0.999  # cosine and logsnr: clip near t = T
    sigma_min: float = 0.002  # logsnr only: the noise level sqrt(1 - alpha_bar) at t = 0
    alpha_bar_end: float = 0.005  # logsnr only: alpha_bar at t = T - 1


def linear_betas(c: ScheduleConfig) -> torch.Tensor:
    return torch.linspace(c.beta_start, c.beta_end, c.num_timesteps, dtype=torch.float64)


def cosine_betas(c: ScheduleConfig) -> torch.Tensor:
    """alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2), betas from its ratios (improved DDPM)."""
    steps = torch.arange(c.num_timesteps + 1, dtype=torch.float64) / c.num_timesteps
    f = torch.cos((steps + c.cosine_offset) / (1 + c.cosine_offset) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=c.max_beta)


def logsnr_betas(c: ScheduleConfig) -> torch.Tensor:
    """log(alpha_bar / (1 - alpha_bar)) falling linearly in t, from sigma_min at t = 0 to
    alpha_bar_end at t = T-1: the noise level shrinks by a constant factor per step near the
    data, so the last steps resolve structure far finer than the linear schedule's (whose
    smallest level, 0.01, is the width of the dino's blobs)."""
    hi = math.log((1 - c.sigma_min**2) / c.sigma_min**2)
    lo = math.log(c.alpha_bar_end / (1 - c.alpha_bar_end))
    alpha_bar = torch.sigmoid(torch.linspace(hi, lo, c.num_timesteps, dtype=torch.float64))
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return (1 - alpha_bar / prev).clamp(max=c.max_beta)


BETA_SCHEDULES: dict[str, Callable[[ScheduleConfig], torch.Tensor]] = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "logsnr": logsnr_betas,
}


@dataclass(frozen=True)
class Schedule:
    """Coefficients per sampling position k = 0..S-1; `timesteps[k]` is the model's t there.

    Without respacing S = T and timesteps[k] = k.
    """

    config: ScheduleConfig
    timesteps: torch.Tensor  # (S,) long: the network's timestep at each position
    betas: torch.Tensor
    alpha_bar: torch.Tensor
    sqrt_alpha_bar: torch.Tensor  # forward: x_t = sqrt(ab) x0 + sqrt(1-ab) eps
    sqrt_one_minus_alpha_bar: torch.Tensor  # forward, and the score: -eps / sqrt(1-ab)
    sqrt_inv_alpha_bar: torch.Tensor  # reverse: x0_hat = x_t / sqrt(ab) - sqrt(1/ab - 1) eps
    sqrt_inv_alpha_bar_minus_one: torch.Tensor  # reverse, x0_hat
    posterior_mean_coef1: torch.Tensor  # reverse: mean = c1 x0_hat + c2 x_t
    posterior_mean_coef2: torch.Tensor
    posterior_std: torch.Tensor  # reverse: std of the added noise; 0 at t = 0

    @property
    def num_timesteps(self) -> int:
        """T of the trained model (guidance's t/T uses it too)."""
        return self.config.num_timesteps

    @property
    def num_steps(self) -> int:
        """S, the number of reverse steps this schedule takes."""
        return int(self.timesteps.shape[0])

    def to(self, device: torch.device | str) -> Schedule:
        tensors = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return Schedule(config=self.config, **tensors)


def full_alpha_bar(config: ScheduleConfig) -> torch.Tensor:
    """alpha_bar at every trained timestep, float64 (T,)."""
    return torch.cumprod(1 - BETA_SCHEDULES[config.kind](config), dim=0)


def make_schedule(
    config: ScheduleConfig = ScheduleConfig(),
    steps: int | None = None,
    spacing: str = DEFAULT_SPACING,
    kept: list[int] | None = None,
) -> Schedule:
    """The schedule of `config`; with `steps` < T, respaced to that many of its timesteps, which
    `spacing` picks (core/spacing.py; by default evenly spaced), or the `kept` ones given.

    Respacing keeps alpha_bar at the kept timesteps and rederives the betas between them
    (improved DDPM, section 4), so a 20-step run is the same model's 20-step DDPM.
    """
    if config.kind not in BETA_SCHEDULES:
        raise ValueError(f"unknown schedule kind {config.kind!r}; valid: {sorted(BETA_SCHEDULES)}")
    T = config.num_timesteps
    steps = T if steps is None else steps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    full = full_alpha_bar(config)  # float64 for the products, float32 to use
    if kept is None:
        kept = kept_timesteps(full, steps, spacing) if steps < T else list(range(T))
    elif len(kept) != steps:
        raise ValueError(f"{len(kept)} timesteps kept for {steps} steps")
    timesteps = torch.tensor(kept, dtype=torch.long)
    alpha_bar = full[timesteps]
    betas = 1 - alpha_bar / torch.cat([torch.ones(1, dtype=alpha_bar.dtype), alpha_bar[:-1]])
    alphas = 1 - betas
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=alpha_bar.dtype), alpha_bar[:-1]])
    variance = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
    # The reference clips the variance at 1e-20 and adds no noise at t = 0.
    std = variance.clamp(min=1e-20).sqrt()
    std[0] = 0.0
    f32 = {
        "betas": betas,
        "alpha_bar": alpha_bar,
        "sqrt_alpha_bar": alpha_bar.sqrt(),
        "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
        "sqrt_inv_alpha_bar": (1 / alpha_bar).sqrt(),
        "sqrt_inv_alpha_bar_minus_one": (1 / alpha_bar - 1).sqrt(),
        "posterior_mean_coef1": betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
        "posterior_mean_coef2": (1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar),
        "posterior_std": std,
    }
    return Schedule(config, timesteps, **{k: v.float() for k, v in f32.items()})


def add_noise(
    schedule: Schedule, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Forward process q(x_t | x_0) for per-row t: (B, 2), (B, 2), (B,) -> (B, 2)."""
    return schedule.sqrt_alpha_bar[t, None] * x0 + schedule.sqrt_one_minus_alpha_bar[t, None] * eps
