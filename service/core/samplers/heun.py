"""Heun: EDM's second-order solver (Karras et al. 2022, Algorithm 1 without churn)."""

from __future__ import annotations

import torch

from service.core.samplers.base import Sampler, Stages, levels, pad_columns
from service.core.samplers.registry import register
from service.core.schedule import Schedule


def _heun_stages(s: Schedule, params: dict[str, float]) -> Stages:
    ab, ab_prev = levels(s)
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
        pad_columns(list(table.T)),
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
