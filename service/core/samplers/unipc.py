"""UniPC (Zhao et al. 2023), as diffusers' UniPCMultistepScheduler with data prediction: a
multistep predictor UniP-p, and after each evaluation the corrector UniC, which re-solves the
step just taken with the new evaluation included (order p + 1) at no extra evaluation.

In the VP coordinates alpha = sqrt(ab), s = sqrt(1 - ab), lambda = ln(alpha / s) = -ln sig and
m_i = x0_hat at evaluation i, a step of order p from i to j (h = lambda_j - lambda_i) is
    x_j = (s_j / s_i) x_i - alpha_j (e^{-h} - 1) m_i - alpha_j B(h) sum_k rho_k D_k,
D_k = (m_{i-k} - m_i) / r_k, r_k = (lambda_{i-k} - lambda_i) / h, B(h) = -h ("bh1") or
e^{-h} - 1 ("bh2"), and rho solving the order conditions (UniP-2: rho = 1/2). The corrector
applies the same formula from the corrected x_{i-1} with m_j in the sum (r = 1). The order
warms up over the first steps and falls to 1 on the last (diffusers' `lower_order_final`),
where x_0 = m. Every coefficient is a number fixed by the schedule, so the whole update is one
linear combination of x, eps and the carried state (x_c of the last step and three m's).
"""

from __future__ import annotations

import math

import torch

from service.core.params import Param
from service.core.samplers.base import Sampler, Stages, levels, one_per_step
from service.core.samplers.registry import register
from service.core.schedule import Schedule


def _rhos(lam: list[float], base: int, h: float, p: int, bh: int, corrector: bool):
    """(rks, rhos, h_phi_1, B_h) of a step of order p from evaluation `base`, whose history is
    base-1, base-2, ... (diffusers' multistep_uni_{p,c}_bh_update)."""
    hh = -h
    h_phi_1 = math.expm1(hh)
    b_h = hh if bh == 1 else math.expm1(hh)
    rks = [(lam[base - k] - lam[base]) / h for k in range(1, p)] + [1.0]
    R, b, h_phi_k, factorial = [], [], h_phi_1 / hh - 1, 1
    for i in range(1, p + 1):
        R.append([r ** (i - 1) for r in rks])
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    if corrector:
        rhos = [0.5] if p == 1 else torch.linalg.solve(torch.tensor(R), torch.tensor(b)).tolist()
    elif p == 1:
        rhos = []
    elif p == 2:
        rhos = [0.5]
    else:
        rhos = torch.linalg.solve(torch.tensor(R)[:-1, :-1], torch.tensor(b)[:-1]).tolist()
    return rks, rhos, h_phi_1, b_h


def _step(sig: list[float], lam: list[float], i: int, j: int, p: int, bh: int, corr: bool):
    """x_j = X x_i + sum over m of weights: (X, {evaluation index: weight})."""
    alpha = [1 / math.sqrt(1 + v * v) for v in sig]
    s = [v * a for v, a in zip(sig, alpha, strict=True)]
    if sig[j] == 0:  # to the data: x_0 = m_i (order 1 there)
        return 0.0, {i: 1.0}
    h = lam[j] - lam[i]
    rks, rhos, h_phi_1, b_h = _rhos(lam, i, h, p, bh, corr)
    weights = {i: -alpha[j] * h_phi_1}
    for k in range(1, p):  # D_k = (m_{i-k} - m_i) / r_k
        w = -alpha[j] * b_h * rhos[k - 1] / rks[k - 1]
        weights[i - k] = weights.get(i - k, 0.0) + w
        weights[i] -= w
    if corr:  # the new evaluation, with r = 1
        w = -alpha[j] * b_h * rhos[-1]
        weights[j] = weights.get(j, 0.0) + w
        weights[i] -= w
    return s[j] / s[i], weights


def _unipc_stages(s: Schedule, params: dict[str, float]) -> Stages:
    order, bh = int(params["order"]), int(params["bh"])
    ab, _ = levels(s)
    sig = (1 / ab - 1).sqrt().flip(0).tolist() + [0.0]  # evaluation order, then the data
    S = len(sig) - 1
    lam = [-math.log(v) if v > 0 else math.inf for v in sig]
    orders = [min(order, i + 1, S - i) for i in range(S)]
    rows = []
    for i in range(S):
        row = [math.sqrt(1 + sig[i] ** 2), sig[i]] + [0.0] * 10
        if i == 0:
            row[2] = 1.0  # nothing to correct yet: x_c = x
        else:  # x_c = C_x x_c(i-1) + C_0 m_i + C_1 m_{i-1} + C_2 m_{i-2} + C_3 m_{i-3}
            row[3], weights = _step(sig, lam, i - 1, i, orders[i - 1], bh, corr=True)
            for index, w in weights.items():
                row[4 + i - index] = w
        # x' = P_x x_c + P_0 m_i + P_1 m_{i-1} + P_2 m_{i-2}
        row[8], weights = _step(sig, lam, i, i + 1, orders[i], bh, corr=False)
        for index, w in weights.items():
            row[9 + i - index] = w
        rows.append(row)
    table = torch.tensor(rows, dtype=torch.float64)
    # multistep: the history needs the guided x0_hat, so no CFG++ (its guider refuses it)
    return one_per_step(s.timesteps.cpu().flip(0), table, torch.zeros(S))


def unipc_update(x, eps, noise, coef, state):
    """m = x / sqrt(ab) - sig eps; x_c = K x + C_x x_c' + C . (m, m_1, m_2, m_3);
    x' = P_x x_c + P . (m, m_1, m_2); keep (x_c, m, m_1, m_2)."""
    m = coef[:, 0:1] * x - coef[:, 1:2] * eps
    ms = [m, state[:, 2:4], state[:, 4:6], state[:, 6:8]]
    x_c = coef[:, 2:3] * x + coef[:, 3:4] * state[:, 0:2]
    for k in range(4):
        x_c = x_c + coef[:, 4 + k : 5 + k] * ms[k]
    x_next = coef[:, 8:9] * x_c
    for k in range(3):
        x_next = x_next + coef[:, 9 + k : 10 + k] * ms[k]
    return x_next, torch.cat([x_c, m, state[:, 2:6]], dim=1)


register(
    Sampler(
        "unipc",
        "UniPC (Zhao et al. 2023): a multistep predictor of the data prediction and a corrector "
        "that folds each new evaluation into the step just taken (order + 1, no extra "
        "evaluation).",
        lambda steps: steps,
        "1",
        _unipc_stages,
        unipc_update,
        (
            "sqrt_inv_ab",
            "sig",
            "keep",
            "corr_x",
            "corr_m0",
            "corr_m1",
            "corr_m2",
            "corr_m3",
            "pred_x",
            "pred_m0",
            "pred_m1",
            "pred_m2",
        ),
        state_width=8,
        params={
            "order": Param(3, 1, 3, "the predictor's order (the corrector's is one more)", True),
            "bh": Param(2, 1, 2, "B(h): 1 is -h (bh1), 2 is e^-h - 1 (bh2)", True),
        },
    )
)
