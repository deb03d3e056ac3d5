"""DPM-Solver++(2M) (Lu et al. 2022), as in k-diffusion's sample_dpmpp_2m."""

from __future__ import annotations

import torch

from service.core.samplers.base import Sampler, Stages, levels, one_per_step
from service.core.samplers.registry import register
from service.core.schedule import Schedule


def _dpmpp_2m_stages(s: Schedule, params: dict[str, float]) -> Stages:
    ab, ab_prev = levels(s)
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
    return one_per_step(
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
