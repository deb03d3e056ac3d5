"""CFG-Zero* (Fan et al. 2025, "CFG-Zero*: improved classifier-free guidance for flow matching
models").

The unconditional prediction is first scaled by the optimised scale, per row,

    s* = <eps_c, eps_u> / (|eps_u|^2 + 1e-8),    eps_w = s* eps_u + w (eps_c - s* eps_u),

the least-squares fit of eps_c by eps_u, and the first `zero_init_steps` steps are zeroed:
eps = 0, so y = x / sqrt(ab) does not move on those ODE steps (the paper's zero velocity).
With s* = 1 it is cfg; at w = 1 it is the conditional model.
"""

from __future__ import annotations

import torch

from service.core.errors import RequestError
from service.core.guiders.base import GuidedRows, Guider, PlanContext, Reference
from service.core.guiders.cfg import W_RANGE
from service.core.guiders.registry import register
from service.core.params import Param

PARAMS = {
    "zero_init_steps": Param(1, 0, 1000, "the first steps whose eps is zeroed", integer=True),
}


def _columns(ctx: PlanContext) -> dict[str, torch.Tensor]:
    zero = ctx.stages.step < int(ctx.params["zero_init_steps"])
    return {"weight": ctx.weight, "zero": zero, "active": (ctx.weight != 1.0) | zero}


def _combine(rows: GuidedRows) -> tuple[torch.Tensor, None]:
    cond, uncond = rows.eps, rows.reference
    s = (cond * uncond).sum(1, keepdim=True) / ((uncond * uncond).sum(1, keepdim=True) + 1e-8)
    scaled = s * uncond
    eps = scaled + rows.column("weight") * (cond - scaled)
    return torch.where(rows.column("zero") > 0.5, torch.zeros_like(eps), eps), None


def _check(model, spec, guide) -> None:
    steps = spec.steps or model.schedule.num_steps
    zero = (spec.guider_params or {}).get("zero_init_steps")
    if zero is not None and zero >= steps:
        raise RequestError(
            "guider_params.zero_init_steps",
            f"zero_init_steps must be below the {steps} steps",
            f"0 <= zero_init_steps < {steps}",
        )


register(
    Guider(
        "cfg_zero_star",
        "CFG-Zero* (Fan et al. 2025) on a class-conditional model: the unconditional eps scaled "
        "by s* = <eps_c, eps_u> / |eps_u|^2 before cfg's rule, and the first zero_init_steps "
        "steps zeroed. The scale is w, as cfg's.",
        "cfg",
        3.0,
        W_RANGE,
        "0 (the scale is w)",
        combine=_combine,
        reference=Reference.UNCONDITIONAL,
        weighted=True,
        columns=("weight", "zero"),
        plan_columns=_columns,
        params=PARAMS,
        takes=frozenset({"schedule"}),
        needs_class=True,
        conditional_model=True,
        check=_check,
        objective=lambda gradient: "conditional",
    )
)
