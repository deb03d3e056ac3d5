"""DDIM (Song et al. 2021): x_prev = sqrt(ab') x0_hat + sqrt(1 - ab' - s^2) eps + s z."""

from __future__ import annotations

from service.core.params import Param
from service.core.samplers.base import (
    ETA_RANGE,
    Sampler,
    Stages,
    descending,
    levels,
    one_per_step,
    pad_columns,
)
from service.core.samplers.registry import register
from service.core.schedule import Schedule


def _ddim_stages(s: Schedule, params: dict[str, float]) -> Stages:
    ab, ab_prev = levels(s)
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
    t, table, renoise = descending(s.timesteps.cpu(), pad_columns(columns), renoise)
    return one_per_step(t, table, renoise)


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
