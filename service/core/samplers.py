"""Samplers: one registry, one small record each, like guiders (docs/DESIGN.md#4-samplers).

A sampler turns a schedule's S positions into E network evaluations ("stages"), each with its
own network timestep and a row of at most COEF_WIDTH named coefficients, and a pure `update`
that takes a batch of rows at any stages: x, the (guided) noise prediction eps, fresh noise,
each row's coefficients and its carried state -> next x and state. Everything is per row, so
rows of different samplers, stages and steps share one forward pass (core.step.advance) and a
row's result never depends on its batch. A new sampler is one `stages` function, one `update`
function and one `register` line.

Each stage also carries its `renoise` ratio: how much of the eps that re-noises the step
(rather than the one that predicts x_0) reaches x_next, relative to the eps coefficient of the
whole update. An update fed eps + renoise (eps_r - eps) moves as if x_0 were predicted from
eps and the step re-noised with eps_r: what CFG++ needs (core/guiders/cfg_plus_plus.py).

Notation: at position k (counting down, S-1 .. 0) alpha_bar = ab_k and the variance-exploding
noise level sig_k = sqrt(1/ab_k - 1); y = x / sqrt(ab) moves by dy/dsig = eps on the
probability-flow ODE. The position after k = 0 is the clean data (ab = 1, sig = 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from service.core.params import Param, resolve_params
from service.core.schedule import Schedule

COEF_WIDTH = 5
ETA_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class Stages:
    """A sampler's evaluations on one schedule, in evaluation order (first evaluation first)."""

    t: torch.Tensor  # (E,) long: the network timestep
    coef: torch.Tensor  # (E, COEF_WIDTH) float64: the update's coefficients, named by the sampler
    renoise: torch.Tensor  # (E,) float64: see the module docstring
    step: torch.Tensor  # (E,) long: the step (0 = first) each evaluation belongs to


# (schedule, params) -> Stages
StagesFn = Callable[[Schedule, Mapping[str, float]], Stages]
# (x, eps, noise or None, coef (B, COEF_WIDTH), state (B, state_width)) -> (x_next, state)
UpdateFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor],
]


@dataclass(frozen=True)
class Sampler:
    name: str
    description: str
    evaluations: Callable[[int], int]  # network evaluations for S steps
    evaluations_text: str
    stages: StagesFn
    update: UpdateFn
    columns: tuple[str, ...]  # the names of its coefficient columns, in order
    stochastic: bool = False  # draws fresh noise at every evaluation
    state_width: int = 0  # floats per row carried from one evaluation to the next
    params: dict[str, Param] = field(default_factory=dict)
    deterministic: Callable[[Mapping[str, float]], bool] = lambda params: True

    def column(self, name: str) -> int:
        """The index of a named coefficient (density guidance reads Heun's by name)."""
        return self.columns.index(name)


SAMPLERS: dict[str, Sampler] = {}


def register(sampler: Sampler) -> Sampler:
    SAMPLERS[sampler.name] = sampler
    return sampler


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid names: {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def sampler_params(sampler: Sampler, given: Mapping[str, float | None]) -> dict[str, float]:
    """The sampler's parameters with defaults filled in; RequestError naming a bad one."""
    takers: dict[str, list[str]] = {}
    for other in SAMPLERS.values():
        for name in other.params:
            takers.setdefault(name, []).append(other.name)
    return resolve_params("sampler_params", sampler.name, sampler.params, given, takers)


def _levels(s: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
    """ab and ab of the next position (1 after k = 0), float64, indexed by position k."""
    ab = s.alpha_bar.double().cpu()
    return ab, torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])


def _descending(*tables: torch.Tensor) -> list[torch.Tensor]:
    """Position-indexed tables in evaluation order (k = S-1 first)."""
    return [t.flip(0) for t in tables]


def _pad(columns: list[torch.Tensor]) -> torch.Tensor:
    table = torch.stack(columns, dim=1)
    return torch.cat([table, table.new_zeros(len(table), COEF_WIDTH - table.shape[1])], dim=1)


def _one_per_step(t: torch.Tensor, coef: torch.Tensor, renoise: torch.Tensor) -> Stages:
    return Stages(t, coef, renoise, torch.arange(len(t)))


# -- ddpm: ancestral sampling, one evaluation and one noise draw per step ----------------------


def _ddpm_stages(s: Schedule, params: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    # the schedule's own float32 coefficients, so results stay bit-identical to the sampler
    # this service always had
    columns = [
        s.sqrt_inv_alpha_bar,
        s.sqrt_inv_alpha_bar_minus_one,
        s.posterior_mean_coef1,
        s.posterior_mean_coef2,
        s.posterior_std,
    ]
    table = torch.stack([c.cpu() for c in columns], dim=1)
    t, table = _descending(s.timesteps.cpu(), table)
    # the x_t term of the posterior mean, c2 x_t = c2 (sqrt(ab) x0 + sqrt(1 - ab) eps), is the
    # re-noising: c2 sqrt(1 - ab) against the whole eps coefficient -c1 sqrt(1/ab - 1)
    c = table.double()
    renoise = -(c[:, 3] * c[:, 1] / c[:, 0]) / (c[:, 2] * c[:, 1]).clamp_min(1e-30)
    return _one_per_step(t, table, renoise)


def ddpm_update(x, eps, noise, coef, state):
    """x0_hat = x / sqrt(ab) - sqrt(1/ab - 1) eps; mean = c1 x0_hat + c2 x; + std z."""
    x0_hat = coef[:, 0:1] * x - coef[:, 1:2] * eps
    mean = coef[:, 2:3] * x0_hat + coef[:, 3:4] * x
    return mean + coef[:, 4:5] * noise, state


register(
    Sampler(
        "ddpm",
        "Ancestral DDPM (Ho et al. 2020) on the respaced schedule: the service's original sampler.",
        lambda steps: steps,
        "1",
        _ddpm_stages,
        ddpm_update,
        ("sqrt_inv_ab", "sqrt_inv_ab_minus_one", "posterior_c1", "posterior_c2", "std"),
        stochastic=True,
    )
)


# -- ddim: x_prev = sqrt(ab') x0_hat + sqrt(1 - ab' - s^2) eps + s z ---------------------------


def _ddim_stages(s: Schedule, params: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    ab, ab_prev = _levels(s)
    eta = params["eta"]
    std = eta * ((1 - ab_prev) / (1 - ab)).sqrt() * (1 - ab / ab_prev).clamp(min=0).sqrt()
    columns = [
        (1 / ab).sqrt(),
        (1 / ab - 1).sqrt(),
        ab_prev.sqrt(),
        (1 - ab_prev - std**2).clamp(min=0).sqrt(),
        std,
    ]
    # x_prev = c2 (c0 x - c1 eps) + c3 eps_r + c4 z: eps_r's share of the eps coefficient
    renoise = columns[3] / (columns[3] - columns[2] * columns[1])
    t, table, renoise = _descending(s.timesteps.cpu(), _pad(columns), renoise)
    return _one_per_step(t, table, renoise)


def ddim_update(x, eps, noise, coef, state):
    x0_hat = coef[:, 0:1] * x - coef[:, 1:2] * eps
    return coef[:, 2:3] * x0_hat + coef[:, 3:4] * eps + coef[:, 4:5] * noise, state


register(
    Sampler(
        "ddim",
        "DDIM (Song et al. 2021): eta = 0 is the deterministic probability-flow discretisation, "
        "eta = 1 adds DDPM's posterior noise.",
        lambda steps: steps,
        "1",
        _ddim_stages,
        ddim_update,
        ("sqrt_inv_ab", "sqrt_inv_ab_minus_one", "sqrt_ab_next", "direction", "std"),
        stochastic=True,
        params={"eta": Param(0.0, *ETA_RANGE, "noise: 0 deterministic, 1 DDPM-like")},
        deterministic=lambda params: params.get("eta") == 0.0,
    )
)


# -- heun: EDM's second-order solver (Karras et al. 2022, Algorithm 1 without churn) -----------


def _heun_stages(s: Schedule, params: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    ab, ab_prev = _levels(s)
    sig, sig_prev = (1 / ab - 1).sqrt(), (1 / ab_prev - 1).sqrt()
    times, rows, renoise, steps = [], [], [], []
    for k in range(len(ab) - 1, -1, -1):
        h, c_in, c_out = sig_prev[k] - sig[k], 1 / ab[k].sqrt(), ab_prev[k].sqrt()
        # y' = y + h eps = (y - sig eps) + sig' eps: sig' eps re-noises, both stages alike
        ratio = float(sig_prev[k] / h)
        times.append(s.timesteps[k])  # predictor (Euler) at t_k; alone on the last step
        rows.append([0.0, c_in, h, c_out])
        renoise.append(ratio)
        steps.append(len(ab) - 1 - k)
        if k > 0:  # corrector at t_{k-1}: the trapezoid of both slopes
            times.append(s.timesteps[k - 1])
            rows.append([1.0, 0.0, h, c_out])
            renoise.append(ratio)
            steps.append(len(ab) - 1 - k)
    table = torch.tensor(rows, dtype=torch.float64)
    return Stages(
        torch.stack(times).cpu(),
        _pad(list(table.T)),
        torch.tensor(renoise, dtype=torch.float64),
        torch.tensor(steps),
    )


def heun_update(x, eps, noise, coef, state):
    """Predictor rows: y = x / sqrt(ab), x' = sqrt(ab')(y + h eps), keep (y, eps).
    Corrector rows: x' = sqrt(ab')(y + h (eps_kept + eps) / 2)."""
    corrector, c_in, h, c_out = coef[:, 0:1], coef[:, 1:2], coef[:, 2:3], coef[:, 3:4]
    y = c_in * x
    predicted = c_out * (y + h * eps)
    corrected = c_out * (state[:, :2] + h * (0.5 * (state[:, 2:] + eps)))
    is_corrector = corrector > 0.5
    x_next = torch.where(is_corrector, corrected, predicted)
    return x_next, torch.where(is_corrector, state, torch.cat([y, eps], dim=1))


register(
    Sampler(
        "heun",
        "Heun's second-order probability-flow ODE solver (Karras et al. 2022, EDM): two "
        "evaluations per step, one on the last (Euler to the data).",
        lambda steps: 2 * steps - 1,
        "2 (1 on the last step)",
        _heun_stages,
        heun_update,
        ("corrector", "c_in", "h", "c_out"),
        state_width=4,
    )
)


# -- dpmpp_2m: DPM-Solver++(2M) (Lu et al. 2022), as in k-diffusion's sample_dpmpp_2m ----------


def _dpmpp_2m_stages(s: Schedule, params: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    ab, ab_prev = _levels(s)
    sig, sig_prev = (1 / ab - 1).sqrt(), (1 / ab_prev - 1).sqrt()
    lam = -sig.log()  # lambda = log(alpha / sigma) = -log(sig)
    rows, renoise = [], []
    for k in range(len(ab) - 1, -1, -1):
        ratio = sig_prev[k] / sig[k]  # exp(-h)
        first_order = k == len(ab) - 1 or k == 0  # no history yet, or the last step to sig 0
        if first_order:
            w1, w2 = 1.0, 0.0
        else:
            r = (lam[k] - lam[k + 1]) / (-sig_prev[k].log() - lam[k])  # h_last / h
            w1, w2 = 1 + 1 / (2 * r), -1 / (2 * r)
        out = ab_prev[k].sqrt()
        rows.append(
            [
                1 / ab[k].sqrt(),
                (1 / ab[k] - 1).sqrt(),
                out * ratio / ab[k].sqrt(),
                out * (1 - ratio) * w1,
                out * (1 - ratio) * w2,
            ]
        )
        # (sig'/sig) y carries sig' eps; the eps coefficient of the update is (sig' - sig) w1
        renoise.append(float(sig_prev[k] / ((sig_prev[k] - sig[k]) * w1)))
    table = torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)
    return _one_per_step(
        s.timesteps.cpu().flip(0), table, torch.tensor(renoise, dtype=torch.float64)
    )


def dpmpp_2m_update(x, eps, noise, coef, state):
    """x0_hat = x / sqrt(ab) - sig eps; x' = a x + b1 x0_hat + b2 x0_hat_previous."""
    x0_hat = coef[:, 0:1] * x - coef[:, 1:2] * eps
    return coef[:, 2:3] * x + coef[:, 3:4] * x0_hat + coef[:, 4:5] * state, x0_hat


register(
    Sampler(
        "dpmpp_2m",
        "DPM-Solver++(2M) (Lu et al. 2022): second-order multistep on the data prediction, one "
        "evaluation per step reusing the previous step's.",
        lambda steps: steps,
        "1",
        _dpmpp_2m_stages,
        dpmpp_2m_update,
        ("sqrt_inv_ab", "sqrt_inv_ab_minus_one", "a", "b1", "b2"),
        state_width=2,
    )
)
