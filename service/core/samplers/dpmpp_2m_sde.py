"""DPM-Solver++(2M) SDE (Lu et al. 2022), as k-diffusion's `sample_dpmpp_2m_sde` with its
default midpoint correction and independent Gaussian noise per step.

With lambda = -ln sig, h = lambda' - lambda and eta h the share of the step given to noise,
in y = x / sqrt(ab):
    y' = (sig'/sig) e^{-eta h} y + (1 - e^{-(1+eta) h}) D
         + (1 - e^{-(1+eta) h}) / (2r) (D - D_prev) + sig' sqrt(1 - e^{-2 eta h}) z,
D = x0_hat, r = h_prev / h; first order on the first step (no D_prev yet); the last step, to
sig' = 0, returns D. eta = 0 is DPM-Solver++(2M) with the midpoint rule; eta = 1 the SDE.
"""

from __future__ import annotations

import math

import torch

from service.core.params import Param
from service.core.samplers.base import ETA_RANGE, Sampler, Stages, levels, one_per_step
from service.core.samplers.registry import register
from service.core.schedule import Schedule


def _dpmpp_2m_sde_stages(s: Schedule, params: dict[str, float]) -> Stages:
    ab, ab_next = levels(s)
    sig, sig_next = (1 / ab - 1).sqrt().tolist(), (1 / ab_next - 1).sqrt().tolist()
    eta = params["eta"]
    rows, h_last = [], None
    for k in range(len(sig) - 1, -1, -1):
        c_in, out = math.sqrt(1 + sig[k] ** 2), 1 / math.sqrt(1 + sig_next[k] ** 2)
        if sig_next[k] == 0:  # the last step: the denoised prediction itself
            rows.append([c_in, sig[k], 0.0, 1.0, 0.0, 0.0])
            continue
        h = math.log(sig[k] / sig_next[k])
        a = sig_next[k] / sig[k] * math.exp(-eta * h)
        e = -math.expm1(-h - eta * h)
        b1 = 0.0 if h_last is None else -e / (2 * h_last / h)
        std = sig_next[k] * math.sqrt(-math.expm1(-2 * eta * h))
        rows.append([c_in, sig[k], out * a * c_in, out * (e - b1), out * b1, out * std])
        h_last = h
    table = torch.tensor(rows, dtype=torch.float64)
    # multistep: the history needs the guided x0_hat, so no CFG++ (its guider refuses it)
    return one_per_step(s.timesteps.cpu().flip(0), table, torch.zeros(len(rows)))


def dpmpp_2m_sde_update(x, eps, noise, coef, state):
    """D = x / sqrt(ab) - sig eps; x' = a x + b0 D + b1 D_prev + std z; keep D."""
    d = coef[:, 0:1] * x - coef[:, 1:2] * eps
    x_next = coef[:, 2:3] * x + coef[:, 3:4] * d + coef[:, 4:5] * state + coef[:, 5:6] * noise
    return x_next, d


register(
    Sampler(
        "dpmpp_2m_sde",
        "DPM-Solver++(2M) SDE (Lu et al. 2022; k-diffusion): second-order multistep on the data "
        "prediction with eta of each step given to fresh noise; eta = 0 is the ODE solver.",
        lambda steps: steps,
        "1",
        _dpmpp_2m_sde_stages,
        dpmpp_2m_sde_update,
        ("sqrt_inv_ab", "sig", "a", "b0", "b1", "std"),
        stochastic=True,
        state_width=2,
        params={"eta": Param(1.0, *ETA_RANGE, "noise: 0 the ODE, 1 the SDE")},
        deterministic=lambda params: params.get("eta") == 0.0,
    )
)
