"""Euler ancestral (k-diffusion's `sample_euler_ancestral`): an Euler step of the probability-flow
ODE down to sig_down, then fresh noise back up to the next level sig'.

In the variance-exploding coordinates y = x / sqrt(ab) (core/samplers/base.py) a step from sig to
sig' splits sig'^2 = sig_down^2 + sig_up^2, sig_up = min(sig', eta sig' sqrt(1 - sig'^2 / sig^2)),
and moves y' = y + (sig_down - sig) eps + sig_up z. eta = 1 is the ancestral step whose noise
matches the reverse SDE's marginals; eta = 0 is plain Euler (deterministic).
"""

from __future__ import annotations

import torch

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


def _euler_a_stages(s: Schedule, params: dict[str, float]) -> Stages:
    ab, ab_next = levels(s)
    sig, sig_next = (1 / ab - 1).sqrt(), (1 / ab_next - 1).sqrt()
    eta = params["eta"]
    up = torch.minimum(sig_next, eta * sig_next * (1 - sig_next**2 / sig**2).clamp(min=0).sqrt())
    down = (sig_next**2 - up**2).clamp(min=0).sqrt()
    out = ab_next.sqrt()
    columns = [out / ab.sqrt(), out * (down - sig), out * up]
    # y' = (y - sig eps) + sig_down eps: sig_down eps re-noises
    renoise = down / (down - sig)
    t, table, renoise = descending(s.timesteps.cpu(), pad_columns(columns), renoise)
    return one_per_step(t, table, renoise)


def euler_a_update(x, eps, noise, coef, state):
    """x' = sqrt(ab') (x / sqrt(ab) + (sig_down - sig) eps + sig_up z)."""
    return coef[:, 0:1] * x + coef[:, 1:2] * eps + coef[:, 2:3] * noise, state


register(
    Sampler(
        "euler_a",
        "Euler ancestral (k-diffusion): an Euler step of the probability-flow ODE to sig_down, "
        "then fresh noise up to the next level; eta = 0 is plain Euler.",
        lambda steps: steps,
        "1",
        _euler_a_stages,
        euler_a_update,
        ("a", "b", "std"),
        stochastic=True,
        params={"eta": Param(1.0, *ETA_RANGE, "noise: 0 plain Euler, 1 ancestral")},
        deterministic=lambda params: params.get("eta") == 0.0,
    )
)
