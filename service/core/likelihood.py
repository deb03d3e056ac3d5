"""Exact log-likelihood of a 2D diffusion model through its probability-flow ODE.

In variance-exploding coordinates y = x / sqrt(alpha_bar), sigma = sqrt(1/alpha_bar - 1), the
probability-flow ODE of a DDPM is dy/dsigma = eps(y / sqrt(1 + sigma^2), t(sigma)) (Song et al.
2021, eq. 13; the form of Karras et al. 2022, eq. 4), and its instantaneous change of variables
(Chen et al. 2018; Song et al. 2021, eq. 39) is d log p_sigma(y) / dsigma = -div_y eps. So

    log p_0(y0) = log p_prior(y(sigma_max)) + int_0^sigma_max div_y eps dsigma.

In 2D the divergence costs two input-gradient passes, so it is exact: no Hutchinson noise.
`ode_log_likelihood` is the model-free core; `model_log_likelihood` runs it on a `ReadyModel`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.integrate import solve_ivp

from service.core.energy import energy_eps
from service.core.model import ReadyModel
from service.core.oracle import oracle_denoise
from service.core.pointwise_rk23 import SolveStopped, solve_rk23
from service.core.schedule import BETA_SCHEDULES, ScheduleConfig

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # y (B, d), sigma (B, 1) -> (B, d)
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # x (B, d), t (B,) -> eps (B, d)
LogProb = Callable[[np.ndarray], np.ndarray]  # y (B, d) float64 -> (B,)
SOLVERS = ("pointwise", "scipy")


# Held-out data for likelihoods: a seed no training run uses (they use 0, 1, 2, ...).
HELDOUT_SEED = 1_000_003


class _Capped(Exception):
    pass


@dataclass(frozen=True)
class Likelihood:
    log_density: np.ndarray  # (N,) float64, nats; NaN where `finite` is False
    finite: np.ndarray  # (N,) bool: False where the integration met non-finite values
    nfev: int  # batched evaluations of eps_fn, each one forward and d input-gradient passes
    seconds: float
    # (N,) object: why a point is not finite ("non-finite", "evaluation cap ..."), else None
    reasons: np.ndarray | None = None
    # (N,) int: the evaluations each point took part in (its own work; the scipy solver's
    # shared steps give every point of a batch the batch's count)
    evaluations: np.ndarray | None = None


def bits_per_dim(log_density: np.ndarray, dim: int = 2) -> float:
    """-mean(log p) / (d ln 2); pass only finite values (a NaN propagates)."""
    return float(-np.mean(log_density) / (dim * math.log(2)))


def eps_and_divergence(
    eps_fn: EpsFn, y: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """eps (B, d) and its exact divergence div_y eps (B,), float64 on y's device, by d
    input-gradient passes; `sigma` (B, 1) is each row's noise level.

    Differentiating a column's sum over rows gives each row its own gradient because rows do
    not interact (the denoiser has no batch statistics); a row's NaN stays in that row.
    """
    yt = y.detach().clone().requires_grad_(True)
    d = y.shape[1]
    # autograd for the input only: the model's parameters have requires_grad False
    with torch.enable_grad():
        eps = eps_fn(yt, sigma)
        div = torch.zeros(len(y), dtype=torch.float64, device=y.device)
        for i in range(d):
            (grad,) = torch.autograd.grad(eps[:, i].sum(), yt, retain_graph=i < d - 1)
            div += grad[:, i]
    return eps.detach().to(torch.float64), div


def _ode_rhs(eps_fn: EpsFn, d: int, sigma_offset: float):
    """dz/ds for z = [y, int div dsigma] in s = log(sigma + offset): (sigma + offset) dz/dsigma."""

    def rhs(s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        scale = s.exp()[:, None]
        sigma = (scale - sigma_offset).clamp(min=0.0)
        eps, div = eps_and_divergence(eps_fn, z[:, :d], sigma)
        return torch.cat([eps, div[:, None]], dim=1) * scale

    return rhs


def _integrate_pointwise(
    eps_fn: EpsFn,
    y0: torch.Tensor,
    span: tuple[float, float],
    rtol: float,
    atol: float,
    sigma_offset: float,
    max_evaluations: int | None,
    should_stop: Callable[[], bool] | None,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, int, np.ndarray]:
    n, d = y0.shape
    z0 = torch.cat([y0, torch.zeros(n, 1, dtype=y0.dtype, device=y0.device)], dim=1)
    rhs = _ode_rhs(eps_fn, d, sigma_offset)
    sol = solve_rk23(rhs, *span, z0, rtol, atol, max_evaluations, should_stop)
    return sol.z, sol.done, sol.reasons, sol.calls, sol.evaluations


def _integrate_scipy(
    eps_fn: EpsFn,
    y0: torch.Tensor,
    span: tuple[float, float],
    rtol: float,
    atol: float,
    sigma_offset: float,
    max_evaluations: int | None,
    should_stop: Callable[[], bool] | None,
    method: str,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, int, np.ndarray]:
    """One shared adaptive step for the whole batch, stacked into one system: scipy's error
    norm is the RMS over the whole state, so the steps mostly follow the hardest point."""
    n, d = y0.shape
    device = y0.device
    bad = torch.zeros(n, dtype=torch.bool, device=device)  # sticky: a NaN point is frozen
    calls = 0
    rhs = _ode_rhs(eps_fn, d, sigma_offset)

    def fun(s: float, z: np.ndarray) -> np.ndarray:
        nonlocal calls, bad
        calls += 1
        if should_stop is not None and should_stop():
            raise SolveStopped("the likelihood solve was stopped", calls - 1, n * (calls - 1))
        if max_evaluations is not None and calls > max_evaluations:
            raise _Capped
        state = torch.from_numpy(z.reshape(d + 1, n).T.copy()).to(device)
        dz = rhs(torch.full((n,), s, dtype=torch.float64, device=device), state)
        bad |= ~torch.isfinite(dz).all(dim=1)
        # a zero derivative keeps the flagged points' NaN out of the solver's shared error norm,
        # which would otherwise shrink the step for every point until the solve fails
        dz[bad] = 0.0
        return dz.T.reshape(-1).cpu().numpy()

    z0 = torch.cat([y0, torch.zeros(n, 1, dtype=y0.dtype, device=device)], dim=1)
    try:
        sol = solve_ivp(fun, span, z0.T.reshape(-1).cpu().numpy(), method, rtol=rtol, atol=atol)
    except _Capped:
        reasons = np.full(n, f"past the evaluation cap ({max_evaluations}) of its batch", object)
        return z0, np.zeros(n, dtype=bool), reasons, calls - 1, np.full(n, calls - 1)
    z = torch.from_numpy(sol.y[:, -1].reshape(d + 1, n).T.copy())
    done = ~bad.cpu().numpy() & sol.success  # a failed solve trusts no point
    reasons = np.full(n, None, object)
    reasons[~done] = "non-finite values" if sol.success else f"the solver failed: {sol.message}"
    return z, done, reasons, int(sol.nfev), np.full(n, int(sol.nfev))


def ode_log_likelihood(
    eps_fn: EpsFn,
    y0: np.ndarray | torch.Tensor,
    sigma_max: float,
    prior_log_prob: LogProb,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    *,
    sigma_offset: float = 1e-3,
    batch: int | None = None,
    solver: str = "pointwise",
    method: str = "RK23",
    sigma_start: float = 0.0,
    max_evaluations: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: torch.device | str = "cpu",
) -> Likelihood:
    """log p_0(y0) in nats from the probability-flow ODE, integrated from sigma = 0 to sigma_max
    (or log p_sigma_start(y0), the density at that noise level, from sigma_start).

    The state per point is (y, accumulated divergence), float64 on `device`. `solver`:
    "pointwise" (core/pointwise_rk23.py): every point takes its own RK23 steps while sharing
    each batched evaluation, so a hard point does not make the others' steps smaller, and
    `max_evaluations` caps each point's evaluations; "scipy": `batch` points at a time form
    one system solved by scipy's adaptive `method` with one shared step, and `max_evaluations`
    caps each batch (the reference, and the comparison in the bench). `batch` bounds the rows
    of one evaluation for either.
    The solver's variable is s = log(sigma + sigma_offset): sigma spans ~0.002..14 and a
    model's eps changes on the scale of log sigma (its t is linear in log sigma), so equal
    steps in s are equally hard, while the offset keeps sigma = 0 (the data) at a finite s and
    spends O(1) of s below sigma_offset, where eps barely changes. A point whose eps or
    divergence turns non-finite is flagged (`finite` False, log-density NaN), never raised;
    so is one past its cap, with the reason. `should_stop` is asked before every evaluation
    and ends the solve with SolveStopped.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "pointwise" and method != "RK23":
        raise ValueError(f"the pointwise solver is RK23 only, got method {method!r}")
    y0 = torch.as_tensor(np.asarray(y0.detach().cpu() if isinstance(y0, torch.Tensor) else y0))
    y0 = y0.to(device=device, dtype=torch.float64)
    if y0.ndim != 2 or len(y0) == 0:
        raise ValueError(f"y0 must have shape (N, d) with N >= 1, got {tuple(y0.shape)}")
    if not (sigma_max > 0 and sigma_offset > 0):
        raise ValueError(
            f"need sigma_max > 0 and sigma_offset > 0, got {sigma_max}, {sigma_offset}"
        )
    if not 0 <= sigma_start < sigma_max:
        raise ValueError(f"need 0 <= sigma_start < sigma_max, got {sigma_start}, {sigma_max}")
    start = time.perf_counter()
    span = (math.log(sigma_start + sigma_offset), math.log(sigma_max + sigma_offset))
    step = batch or len(y0)
    d = y0.shape[1]
    parts = []
    for i in range(0, len(y0), step):
        args = (eps_fn, y0[i : i + step], span, rtol, atol, sigma_offset)
        if solver == "pointwise":
            z, done, reasons, calls, counts = _integrate_pointwise(
                *args, max_evaluations, should_stop
            )
        else:
            z, done, reasons, calls, counts = _integrate_scipy(
                *args, max_evaluations, should_stop, method
            )
        z = z.detach().cpu().numpy()
        with np.errstate(all="ignore"):
            log_p = prior_log_prob(z[:, :d]) + z[:, d]
        finite = done & np.isfinite(log_p)
        reasons[~finite & (reasons == None)] = "non-finite values"  # noqa: E711
        parts.append((np.where(finite, log_p, np.nan), finite, calls, reasons, counts))
    log_p, finite, nfev, reasons, counts = zip(*parts, strict=True)
    return Likelihood(
        np.concatenate(log_p),
        np.concatenate(finite),
        sum(nfev),
        time.perf_counter() - start,
        np.concatenate(reasons),
        np.concatenate(counts),
    )


def noise_levels(config: ScheduleConfig) -> np.ndarray:
    """sigma(t) = sqrt(1/alpha_bar - 1) at the full schedule's t = 0..T-1: float64 (T,)."""
    alpha_bar = torch.cumprod(1 - BETA_SCHEDULES[config.kind](config), dim=0).numpy()
    levels = np.sqrt(1 / alpha_bar - 1)
    if not np.all(np.diff(levels) > 0):
        raise ValueError(f"schedule {config} has a noise level that does not grow with t")
    return levels


def timestep_at(sigma: float, levels: np.ndarray) -> float:
    """The model's continuous t at noise level sigma: linear in log sigma between integer steps.

    Held at 0 below sigma(0), as the sampler's last step uses its t = 0 prediction all the
    way down to the clean data.
    """
    log_sigma = math.log(max(sigma, levels[0]))
    return float(np.interp(log_sigma, np.log(levels), np.arange(len(levels))))


def timesteps_at(sigma: torch.Tensor, log_levels: torch.Tensor) -> torch.Tensor:
    """`timestep_at` for a tensor of noise levels, on their device; `log_levels` = log sigma(t)."""
    log_sigma = sigma.clamp(min=float(log_levels[0].exp())).log().clamp(max=float(log_levels[-1]))
    hi = torch.searchsorted(log_levels, log_sigma).clamp(1, len(log_levels) - 1)
    lo = hi - 1
    frac = (log_sigma - log_levels[lo]) / (log_levels[hi] - log_levels[lo])
    return lo.to(sigma.dtype) + frac.clamp(0.0, 1.0)


def ve_eps(denoise: Denoise, config: ScheduleConfig) -> EpsFn:
    """A VP denoiser (x, t) -> eps in y/sigma coordinates: eps(y / sqrt(1 + sigma^2), t(sigma)),
    each row at its own sigma."""
    log_levels = torch.from_numpy(np.log(noise_levels(config)))
    on_device: dict[torch.device, torch.Tensor] = {}

    def eps_fn(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        levels = on_device.setdefault(y.device, log_levels.to(y.device))
        t = timesteps_at(sigma[:, 0].to(torch.float64), levels)
        return denoise(y / (1 + sigma**2).sqrt(), t)

    return eps_fn


def network_denoise(model: ReadyModel) -> Denoise:
    """The model's eps head in float32 on its device; gradients flow back to the host y."""

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if model.is_oracle:  # exact, in float64
            return oracle_denoise(model, x.to(model.device), t)
        f32 = {"device": model.device, "dtype": torch.float32}
        if model.is_energy:  # eps = -sigma grad E, kept differentiable for the divergence
            x = x.to(**f32)
            return energy_eps(model.network, model.schedule, x, t.to(**f32), create_graph=True)[0]
        return model.network(x.to(**f32), t.to(**f32))[:, :2]

    return denoise


def sampler_prior(sigma_max: float, dim: int = 2) -> LogProb:
    """log density in y of the sampler's start x_{T-1} ~ N(0, I), y = x sqrt(1 + sigma_max^2).

    log N(y / sqrt(v); 0, I) - (d/2) log v with v = 1 + sigma_max^2, i.e. log N(y; 0, v I).
    """
    var = 1 + sigma_max**2

    def log_prob(y: np.ndarray) -> np.ndarray:
        return -0.5 * (y**2).sum(axis=1) / var - 0.5 * dim * math.log(2 * math.pi * var)

    return log_prob


def default_solver(model: ReadyModel) -> str:
    """ "pointwise", but "scipy" for an oracle: its exact density is evaluated one noise level
    at a time (core/exact/density.py groups rows by level), so points at their own levels cost
    one density call each - 30x the time a call on 50 held-out boxes points, where the shared
    step's single level costs one call for all."""
    return "scipy" if model.is_oracle else "pointwise"


def model_log_likelihood(
    model: ReadyModel,
    points: np.ndarray | torch.Tensor,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    batch: int | None = None,
    method: str = "RK23",
    at_level: int | None = None,
    max_evaluations: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    solver: str | None = None,
) -> Likelihood:
    """log p(points) in nats under the model's probability-flow ODE and its sampler's prior.

    `at_level` t: the density of x_t at timestep t instead of the clean data's (t = 0, the
    schedule's first noise level, is what an energy model's E(x, 0) and Density Guidance's
    tracked log-density stand for).

    The ODE runs from the data (sigma = 0 exactly; t is held at 0 below sigma(0)) to
    sigma(T-1) of the full, unrespaced schedule, where the prior is the sampler's own start,
    x_{T-1} ~ N(0, I). That is the model's generative prior, not the data's true marginal
    there (a T = 100 linear schedule ends at alpha_bar ~ 0.36), and it is what the model's
    likelihood means. Points far from the data get a value or a `finite` False flag. The solve
    runs on the model's device; `solver` (default: `default_solver(model)`) and
    `max_evaluations` as in `ode_log_likelihood`.
    """
    solver = solver or default_solver(model)
    config = model.schedule.config
    levels = noise_levels(config)
    points = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points)
    start = float(levels[at_level]) if at_level is not None else 0.0
    # y = x sqrt(1 + sigma^2); log p_x(x) = log p_y(y) + (d/2) log(1 + sigma^2)
    jacobian = 0.5 * points.shape[-1] * math.log1p(start**2)
    result = ode_log_likelihood(
        ve_eps(network_denoise(model), config),
        points.astype(np.float64) * math.sqrt(1 + start**2),
        float(levels[-1]),
        sampler_prior(float(levels[-1])),
        rtol,
        atol,
        # the offset at sigma(0): below it eps is held, above it eps follows log sigma
        sigma_offset=float(levels[0]),
        batch=batch,
        # RK23, not RK45: a ReLU network's divergence is piecewise constant in y, so a higher
        # order buys nothing at its kinks; on the shipped moons models RK23 at 1e-5 is 4 to 10
        # times closer to a 1e-8 reference than RK45 at 1e-5, for ~2x the evaluations
        solver=solver,
        method=method,
        sigma_start=start,
        max_evaluations=max_evaluations,
        should_stop=should_stop,
        device=model.device,
    )
    if not jacobian:
        return result
    return replace(result, log_density=result.log_density + jacobian)
