"""Adaptive projected guidance, APG (Sadat et al. 2024, "Eliminating oversaturation and
artifacts of high guidance scales in diffusion models").

On the denoised prediction x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab), with the conditional
x0_c and the unconditional x0_u (the null class):

    d       = x0_c - x0_u
    m_t     = d + beta m_{t+1}                     momentum (beta < 0 in the paper), per row
    d'      = m_t min(1, r / |m_t|)                the norm threshold r
    d_par   = (<d', x0_c> / |x0_c|^2) x0_c,  d_orth = d' - d_par
    x0_w    = x0_c + (w - 1) (d_orth + eta_par d_par)

and eps_w = (x_t - sqrt(ab) x0_w) / sqrt(1 - ab) for the sampler. With beta = 0, r large and
eta_par = 1 it is cfg exactly (x0 is affine in eps); the paper's default drops the parallel
part (eta_par = 0), which it finds drives oversaturation. The momentum is updated only at the
evaluations where the weight is not 1, as diffusers' guider does.
"""

from __future__ import annotations

import torch

from service.core.guiders.base import GuidedRows, Guider, PlanContext, Reference
from service.core.guiders.cfg import W_RANGE
from service.core.guiders.registry import register
from service.core.params import Param

PARAMS = {
    "momentum": Param(-0.5, -0.99, 0.99, "beta: m_t = d + beta m_{t+1} (the paper: < 0)"),
    "norm_threshold": Param(
        1.0, 0.0, 1e3, "r: the guidance update's norm is cut to r (x0 units)", low_open=True
    ),
    "parallel": Param(0.0, 0.0, 1.0, "eta: the weight of the update's part along x0_c"),
}


def _columns(ctx: PlanContext) -> dict[str, torch.Tensor]:
    full = {name: torch.full_like(ctx.weight, ctx.params[name]) for name in PARAMS}
    return {"weight": ctx.weight, **full}


def _combine(rows: GuidedRows) -> tuple[torch.Tensor, torch.Tensor]:
    sched = rows.model.schedule
    c_x = sched.sqrt_inv_alpha_bar.float()[rows.t, None]  # 1 / sqrt(ab)
    c_eps = sched.sqrt_inv_alpha_bar_minus_one.float()[rows.t, None]  # sqrt(1 / ab - 1)
    x0_c = c_x * rows.x - c_eps * rows.eps
    diff = c_eps * (rows.reference - rows.eps)  # x0_c - x0_u
    average = diff + rows.column("momentum") * rows.state
    norm = average.norm(dim=1, keepdim=True)
    update = average * (rows.column("norm_threshold") / norm).clamp(max=1.0).nan_to_num(1.0)
    unit = x0_c / x0_c.norm(dim=1, keepdim=True).clamp_min(1e-12)
    parallel = (update * unit).sum(1, keepdim=True) * unit
    update = update - parallel + rows.column("parallel") * parallel
    x0_w = x0_c + (rows.column("weight") - 1) * update
    return (c_x * rows.x - x0_w) / c_eps, average


register(
    Guider(
        "apg",
        "Adaptive projected guidance (Sadat et al. 2024) on a class-conditional model: cfg's "
        "update on the denoised x0, averaged with momentum, cut to a norm threshold and split "
        "into parts parallel and orthogonal to x0_c, the parallel part down-weighted. The "
        "scale is w, as cfg's.",
        "cfg",
        3.0,
        W_RANGE,
        "0 (the scale is w)",
        combine=_combine,
        reference=Reference.UNCONDITIONAL,
        weighted=True,
        state_width=2,
        columns=("weight", *PARAMS),
        plan_columns=_columns,
        params=PARAMS,
        takes=frozenset({"schedule"}),
        needs_class=True,
        conditional_model=True,
        objective=lambda gradient: "conditional",
    )
)
