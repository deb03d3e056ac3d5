"""Density Guidance (Karczewski et al. 2025) and Prior Guidance, exact in 2D: the math.

On the probability-flow ODE in variance-exploding coordinates (y = x / sqrt(ab), s = sqrt(1/ab
- 1), dy/ds = eps; see core/likelihood.py), the model's log-density along a path obeys

    d log p_s(y_s) / ds = -div_y eps + (score . (dy/ds - eps)),   score = -eps / s,

so scaling the noise prediction, dy/ds = eta eps, moves log p at the rate
-div_y eps - (eta - 1) |eps|^2 / s. Each step of EDM's Heun solver (core/samplers/heun.py) solves a
row's eta so that its log-density lands on a target path: that is Density Guidance's rescaled
score (the paper's eta = 1 + .../|s score|^2), with the exact 2x2 divergence in place of its
high-dimensional approximation. Heun, not DDIM's Euler steps: along a first-order path the
tracked log-density drifts from the exact ODE likelihood of the end point by ~0.5 nats per
point at 100 steps (moons), along Heun's by ~0.14.

The target path comes from a calibration run: M unguided trajectories from the same start,
tracking log p the same way; the path for quantile q is, at every step, the q-quantile of their
log-densities, which ends at the q-quantile of log p_theta over the model's own samples. Every
start is rescaled to the median norm of the N(0, I) latent (as the authors' code does), so all
rows begin at one log-density.

Prior Guidance scales the initial latent to the norm quantile q of its chi distribution (2
degrees of freedom) and runs an ODE sampler unchanged.

The log-density a row reports is the one tracked along its own path (first order in the step);
docs/RESULTS.md compares it with the exact ODE likelihood of the finished samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from service.core.model import ReadyModel
from service.core.passes import eps_and_divergence
from service.core.samplers import get_sampler
from service.core.schedule import Schedule

CALIBRATION_ROWS = 2048
CALIBRATION_SEED = 20_250_212
SHIFT_FRACTION = 0.25
# eta's range: 0 stops a row for a step, more than ETA_MAX would jump far past the step's
# first-order validity; the tracked log-density uses the clamped eta, so it stays honest
ETA_MIN, ETA_MAX = 0.0, 8.0


def chi2_norm_quantile(q: float) -> float:
    """The q-quantile of |z| for z ~ N(0, I_2): sqrt(-2 log(1 - q)) (chi with 2 d.o.f.)."""
    return math.sqrt(-2.0 * math.log1p(-q))


def rescale_latent(x: torch.Tensor, norm: float) -> torch.Tensor:
    """Prior Guidance: x_T * norm / |x_T| per row."""
    return x * (norm / x.norm(dim=1, keepdim=True).clamp_min(1e-12))


def start_log_density(model: ReadyModel, x: torch.Tensor, t: int) -> torch.Tensor:
    """log density in y of the sampler's start at timestep t (x ~ N(0, I), y = x sqrt(1 + s^2)),
    per row."""
    v = 1.0 + float(model.schedule.sqrt_inv_alpha_bar_minus_one[t]) ** 2
    return -0.5 * (x * x).sum(-1) - math.log(2 * math.pi * v)


@dataclass
class Tracking:
    """A chunk's Density Guidance state: its rows' log-density so far (in y, nats), and from a
    Heun predictor for its corrector: raw eps (2), div_y eps, |eps|^2 / s and the eta used."""

    log_p: torch.Tensor  # (B,)
    kept: torch.Tensor | None = None  # (B, 5)


def _solve_eta(gap: torch.Tensor, push: torch.Tensor) -> torch.Tensor:
    """eta with (eta - 1) * push = gap, clamped; a NaN target (calibration) gives eta = 1."""
    eta = 1 + gap / push.clamp_min(1e-12)
    return eta.clamp(ETA_MIN, ETA_MAX).nan_to_num(1.0)


HEUN = get_sampler("heun")
CORRECTOR, STEP = HEUN.column("corrector"), HEUN.column("h")


def density_eps(
    model: ReadyModel,
    x: torch.Tensor,
    t: torch.Tensor,
    coef: torch.Tensor,
    target: torch.Tensor,
    tracking: Tracking,
    last: bool,
) -> torch.Tensor:
    """One Heun evaluation of Density Guidance for one chunk, its own passes included."""
    eps, div_x = eps_and_divergence(model, x, t)
    return steered_eps(model, eps, div_x, t, coef, target, tracking, last)


def steered_eps(
    model: ReadyModel,
    eps: torch.Tensor,
    div_x: torch.Tensor,
    t: torch.Tensor,
    coef: torch.Tensor,
    target: torch.Tensor,
    tracking: Tracking,
    last: bool,
) -> torch.Tensor:
    """One Heun evaluation of Density Guidance for one chunk (all its rows at one stage), from
    its eps and exact divergence: -> the eps to hand to the Heun update; `tracking` is updated
    in place. `coef`: Heun's coefficients (core/samplers/heun.py names them).

    Predictor at s (step h = s' - s < 0): eta solved from the left-point rate; the lone last
    step (to s' = 0) ends there. Corrector at s': eta solved again from the trapezoid of both
    ends' rates, so the step lands on its target, and the update moves y by
    h eta (eps_1 + eps_2) / 2 (second order, as unguided Heun)."""
    s = model.schedule.sqrt_inv_alpha_bar_minus_one.to(eps.dtype)[t]  # VE sigma at the row's t
    div_y = div_x / (1 + s * s).sqrt()  # x = y / sqrt(1 + s^2)
    w = (eps * eps).sum(-1) / s  # d log p / d s per unit of (eta - 1)
    step = -coef[:, STEP]  # |h|
    if coef[0, CORRECTOR] < 0.5:  # a predictor
        eta = _solve_eta(target - tracking.log_p - step * div_y, step * w)
        if last:  # the last step, to the data: Euler alone
            tracking.log_p = tracking.log_p + step * (div_y + (eta - 1) * w)
            tracking.kept = None
        else:
            tracking.kept = torch.cat([eps, div_y[:, None], w[:, None], eta[:, None]], dim=1)
        return eps * eta[:, None]
    e1, d1, w1, eta_p = tracking.kept[:, :2], *tracking.kept[:, 2:].unbind(1)
    base = tracking.log_p + step * 0.5 * (d1 + div_y)
    push = step * 0.5 * (w1 + w)
    eta = _solve_eta(target - base, push)
    tracking.log_p = base + (eta - 1) * push
    tracking.kept = None
    # the Heun corrector averages the predictor's (eta_p e1) with what it is given
    return eta[:, None] * (e1 + eps) - eta_p[:, None] * e1


def calibrate(model: ReadyModel, schedule: Schedule) -> np.ndarray:
    """Tracked log p of CALIBRATION_ROWS unguided Heun trajectories (the model's samples) on the
    (respaced) `schedule` a plan runs on: (S + 1, rows), row i after i steps, each row sorted.
    Cached on the model, by the schedule's timesteps."""
    key = ("density-calibration", tuple(schedule.timesteps.tolist()))
    if key in model.plans:
        return model.plans[key]
    stages = HEUN.stages(schedule, {})
    coefs = stages.coef.float().to(model.device)
    g = torch.Generator(device="cpu").manual_seed(CALIBRATION_SEED)
    x = torch.randn(CALIBRATION_ROWS, 2, generator=g).to(model.device)  # the model's own starts
    tracking = Tracking(start_log_density(model, x, int(stages.t[0])))
    track = [tracking.log_p.cpu().numpy()]
    state = x.new_zeros(len(x), HEUN.state_width)
    no_target = torch.full((len(x),), math.nan, device=model.device)
    for e in range(len(stages.t)):  # evaluation order
        coef = coefs[e].expand(len(x), -1)
        t = torch.full((len(x),), int(stages.t[e]), device=model.device)
        eps = density_eps(model, x, t, coef, no_target, tracking, last=e == len(stages.t) - 1)
        x, state = HEUN.update(x, eps, None, coef, state)
        if tracking.kept is None:  # a step ended
            track.append(tracking.log_p.cpu().numpy())
    table = np.sort(np.stack(track).astype(np.float64), axis=1)
    ok = np.isfinite(table).all(axis=0)
    table = table[:, ok] if ok.any() else table
    model.plans[key] = table
    return table


def target_path(
    table: np.ndarray, quantile: float | None, log_p: float | None, start: float
) -> np.ndarray:
    """The log-density a guided row should have after each step: (S,).

    quantile q: the q-quantile of the calibration at every step, its start moved to `start`
    (every guided row's, the median-norm latent's) with a shift that fades linearly to 0 over
    the first SHIFT_FRACTION of the steps. log_p T: the path of the quantile whose end is T,
    or, beyond the calibration's range, the nearest end's path shifted by the rest, the shift
    phased in over the same steps."""
    S = table.shape[0] - 1
    # shifts are made in the first quarter of the steps, at high noise, where moving a row's
    # log-density costs little: near the data a path has little room left to move it
    ramp = np.minimum(1.0, np.arange(1, S + 1) / (SHIFT_FRACTION * S))
    q = quantile
    if log_p is not None:
        end = table[-1]
        lo, hi = 0.5 / len(end), 1 - 0.5 / len(end)
        q = float(np.clip(np.searchsorted(end, log_p) / len(end), lo, hi))
    path = np.quantile(table[1:], q, axis=1) + (start - np.quantile(table[0], q)) * (1 - ramp)
    if log_p is not None:
        path = path + (log_p - path[-1]) * ramp
    return path
