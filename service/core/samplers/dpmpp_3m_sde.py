"""DPM-Solver++(3M) SDE, as k-diffusion's `sample_dpmpp_3m_sde` with independent Gaussian noise
per step.

With h = lambda' - lambda (lambda = -ln sig), h_eta = (1 + eta) h, in y = x / sqrt(ab):
    y' = (sig'/sig) e^{-eta h} y + (1 - e^{-h_eta}) D + phi_2 d1 - phi_3 d2
         + sig' sqrt(1 - e^{-2 eta h}) z,
phi_2 = (e^{-h_eta} - 1) / h_eta + 1, phi_3 = phi_2 / h_eta - 1/2, and d1, d2 the first and
second divided differences of the last three x0_hat (D, D_1, D_2) in lambda, scaled by h; the
first step is first order, the second second order; the last step, to sig' = 0, returns D.
"""

from __future__ import annotations

import math

import torch

from service.core.params import Param
from service.core.samplers.base import ETA_RANGE, Sampler, Stages, levels, one_per_step
from service.core.samplers.registry import register
from service.core.schedule import Schedule


def _history_weights(h: float, h_eta: float, h1: float | None, h2: float | None) -> list[float]:
    """phi_2 d1 - phi_3 d2 as weights of (D, D_1, D_2)."""
    phi_2 = math.expm1(-h_eta) / h_eta + 1
    phi_3 = phi_2 / h_eta - 0.5
    if h1 is None:
        return [0.0, 0.0, 0.0]
    if h2 is None:  # d = (D - D_1) / r
        r = h1 / h
        return [phi_2 / r, -phi_2 / r, 0.0]
    r0, r1 = h1 / h, h2 / h
    d1_0 = [1 / r0, -1 / r0, 0.0]  # (D - D_1) / r0
    d1_1 = [0.0, 1 / r1, -1 / r1]  # (D_1 - D_2) / r1
    q = r0 / (r0 + r1)
    d1 = [(1 + q) * u - q * v for u, v in zip(d1_0, d1_1, strict=True)]
    d2 = [(u - v) / (r0 + r1) for u, v in zip(d1_0, d1_1, strict=True)]
    return [phi_2 * u - phi_3 * v for u, v in zip(d1, d2, strict=True)]


def _dpmpp_3m_sde_stages(s: Schedule, params: dict[str, float]) -> Stages:
    ab, ab_next = levels(s)
    sig, sig_next = (1 / ab - 1).sqrt().tolist(), (1 / ab_next - 1).sqrt().tolist()
    eta = params["eta"]
    rows, h1, h2 = [], None, None
    for k in range(len(sig) - 1, -1, -1):
        c_in, out = math.sqrt(1 + sig[k] ** 2), 1 / math.sqrt(1 + sig_next[k] ** 2)
        if sig_next[k] == 0:  # the last step: the denoised prediction itself
            rows.append([c_in, sig[k], 0.0, 1.0, 0.0, 0.0, 0.0])
            continue
        h = math.log(sig[k] / sig_next[k])
        h_eta = h * (1 + eta)
        a = math.exp(-h_eta) * c_in  # e^{-h_eta} = (sig'/sig) e^{-eta h}, applied to y
        w = _history_weights(h, h_eta, h1, h2)
        w[0] += -math.expm1(-h_eta)
        std = sig_next[k] * math.sqrt(-math.expm1(-2 * eta * h))
        rows.append([c_in, sig[k], out * a, *(out * v for v in w), out * std])
        h1, h2 = h, h1
    table = torch.tensor(rows, dtype=torch.float64)
    # multistep: the history needs the guided x0_hat, so no CFG++ (its guider refuses it)
    return one_per_step(s.timesteps.cpu().flip(0), table, torch.zeros(len(rows)))


def dpmpp_3m_sde_update(x, eps, noise, coef, state):
    """D = x / sqrt(ab) - sig eps; x' = a x + b0 D + b1 D_1 + b2 D_2 + std z; keep (D, D_1)."""
    d = coef[:, 0:1] * x - coef[:, 1:2] * eps
    x_next = (
        coef[:, 2:3] * x
        + coef[:, 3:4] * d
        + coef[:, 4:5] * state[:, :2]
        + coef[:, 5:6] * state[:, 2:]
        + coef[:, 6:7] * noise
    )
    return x_next, torch.cat([d, state[:, :2]], dim=1)


register(
    Sampler(
        "dpmpp_3m_sde",
        "DPM-Solver++(3M) SDE (k-diffusion): third-order multistep on the data prediction with "
        "eta of each step given to fresh noise; eta = 0 is the ODE solver.",
        lambda steps: steps,
        "1",
        _dpmpp_3m_sde_stages,
        dpmpp_3m_sde_update,
        ("sqrt_inv_ab", "sig", "a", "b0", "b1", "b2", "std"),
        stochastic=True,
        state_width=4,
        params={"eta": Param(1.0, *ETA_RANGE, "noise: 0 the ODE, 1 the SDE")},
        deterministic=lambda params: params.get("eta") == 0.0,
    )
)
