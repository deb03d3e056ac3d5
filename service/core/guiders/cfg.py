"""Classifier-free guidance (Ho & Salimans 2022) on a class-conditional model.

    eps_w = eps(x, null) + w (eps(x, c) - eps(x, null)),

w the scale: w = 1 is the conditional model unguided, w = 0 the unconditional one; the
reference eps(x, null) is the same network at its null class (trained by label dropout).
Chidambaram et al. (2024, "What does guidance do?") write the guided score
(1 + w') grad log p(x | c) - w' grad log p(x): their w' is our w - 1. The weight may follow a
schedule over the noise level (core/guiders/weights.py); where it is 1 the reference pass is
skipped.
"""

from __future__ import annotations

import torch

from service.core.guiders.base import GuidedRows, Guider, PlanContext, Reference
from service.core.guiders.registry import register

W_RANGE = (0.0, 10.0)  # the guidance weight w


def weight(ctx: PlanContext) -> dict[str, torch.Tensor]:
    return {"weight": ctx.weight}


def referenced_eps(rows: GuidedRows) -> tuple[torch.Tensor, None]:
    """eps_ref + w (eps - eps_ref), per row."""
    ref = rows.reference
    return ref + rows.column("weight") * (rows.eps - ref), None


register(
    Guider(
        "cfg",
        "Classifier-free guidance (Ho & Salimans 2022) on a class-conditional model: eps(x, null) "
        "+ w (eps(x, c) - eps(x, null)), the scale being w (1: the conditional model, 0: the "
        "unconditional). Needs `class`; `guidance_schedule` and `guidance_interval` shape w "
        "over sigma.",
        "cfg",
        3.0,
        W_RANGE,
        "0 (the scale is w)",
        combine=referenced_eps,
        reference=Reference.UNCONDITIONAL,
        weighted=True,
        columns=("weight",),
        plan_columns=weight,
        takes=frozenset({"schedule"}),
        needs_class=True,
        conditional_model=True,
        objective=lambda gradient: "conditional",
    )
)
