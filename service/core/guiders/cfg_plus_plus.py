"""CFG++ (Chung et al. 2024, "CFG++: manifold-constrained classifier free guidance for
diffusion models").

The data prediction uses the guided eps_l = eps_u + l (eps_c - eps_u) with a small l in
[0, 1], and the step re-noises with the unconditional eps_u instead of eps_l. For DDIM:

    x_prev = sqrt(ab') x0(eps_l) + sqrt(1 - ab' - s^2) eps_u + s z,

and for EDM's Euler/Heun steps, in y = x / sqrt(ab): y' = x0(eps_l) + sig' eps_u (the
trapezoid of both stages' slopes for Heun). Each sampler states, per stage, how much of its
eps re-noises (core/samplers/base.py, `renoise`), so the sampler is handed
eps_l + renoise (eps_u - eps_l) and runs unchanged.

At one step CFG++ with l is cfg with w_t = l sig_t / |sig' - sig_t|, which grows with the
number of steps: its l is not cfg's w. In general one stage at l is cfg at (1 - renoise) l,
so at 100 steps of the shipped conditional schedule l ~ w / 12 with DDIM and w / 6 with DDPM
(the default l = 0.3 is near cfg's default w = 3).
DPM-Solver++(2M) is refused: its multistep history must keep the guided x0 while its
re-noising needs eps_u, which one eps cannot carry. There is no weight schedule: l = 1 is not
the conditional model, so a schedule fading to "unguided" has no meaning for it.
"""

from __future__ import annotations

import torch

from service.core.guiders.base import GuidedRows, Guider, PlanContext, Reference
from service.core.guiders.registry import register

L_RANGE = (0.0, 1.0)


def _columns(ctx: PlanContext) -> dict[str, torch.Tensor]:
    E = len(ctx.stages.t)
    return {"weight": torch.full((E,), ctx.scale), "active": torch.ones(E, dtype=torch.bool)}


def _combine(rows: GuidedRows) -> tuple[torch.Tensor, None]:
    uncond = rows.reference
    guided = uncond + rows.column("weight") * (rows.eps - uncond)
    return guided + rows.column("renoise") * (uncond - guided), None


register(
    Guider(
        "cfg_plus_plus",
        "CFG++ (Chung et al. 2024) on a class-conditional model: x0 predicted from eps_u + l "
        "(eps_c - eps_u), the step re-noised with eps_u; the scale is l in [0, 1], far stronger "
        "than cfg's w at many steps. Samplers ddpm, ddim, heun.",
        "cfg",
        0.3,
        L_RANGE,
        "0 (the scale is l)",
        combine=_combine,
        reference=Reference.UNCONDITIONAL,
        columns=("weight",),
        plan_columns=_columns,
        samplers=("ddpm", "ddim", "heun"),
        needs_class=True,
        conditional_model=True,
        objective=lambda gradient: "conditional",
    )
)
