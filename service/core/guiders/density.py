"""Density Guidance (Karczewski et al. 2025, "Devil is in the details: density guidance for
detail-aware generation with flow models"), exact in 2D, on EDM's Heun solver.

Each row's log-density along its probability-flow path is tracked with the exact divergence of
eps, and every evaluation rescales eps by the eta that lands the row on a target path: the
q-quantile (the scale) of the model's own samples' log-density, or `target_log_p` nats. The
math, the calibration of the target path and its checks are in core/density_guidance.py and
docs/DESIGN.md#6-guidance.
"""

from __future__ import annotations

import torch

from service.core import density_guidance as dg
from service.core.guiders.base import GuidedRows, Guider, Pass, PlanContext
from service.core.guiders.registry import register
from service.core.model import ReadyModel
from service.core.plan_columns import COEF, T_COL

QUANTILE_SCALE = (0.001, 0.999)  # the scale is a quantile q


def _columns(ctx: PlanContext) -> dict[str, torch.Tensor]:
    table = dg.calibrate(ctx.model, ctx.schedule)
    target_log_p = ctx.spec.target_log_p
    quantile = None if target_log_p is not None else ctx.scale
    median = dg.chi2_norm_quantile(0.5)
    start = dg.start_log_density(ctx.model, torch.tensor([[median, 0.0]]), int(ctx.stages.t[0]))
    path = dg.target_path(table, quantile, target_log_p, float(start[0]))
    return {"target": torch.from_numpy(path[ctx.stages.step.numpy()])}


def _combine(rows: GuidedRows) -> tuple[torch.Tensor, None]:
    parts, start = [], 0
    for c in rows.chunks:  # its tracking is per chunk: a row's numbers depend on its chunk alone
        part = slice(start, start + c.rows)
        target = rows.columns[part, rows.names["target"]]
        parts.append(
            dg.steered_eps(
                rows.model,
                rows.eps[part],
                rows.divergence[part],
                rows.t[part],
                rows.columns[part, COEF],
                target,
                c.tracking,
                c.position == 0,
            )
        )
        start += c.rows
    return (torch.cat(parts) if len(parts) > 1 else parts[0]), None


def _start(model: ReadyModel, plan, chunk) -> None:
    t = int(plan.stages[chunk.position][T_COL])
    chunk.tracking = dg.Tracking(dg.start_log_density(model, chunk.x, t))


register(
    Guider(
        "density",
        "Density Guidance (Karczewski et al. 2025) on the probability-flow ODE (sampler heun): "
        "each row's log-density is steered, with the exact 2D divergence, to the q-quantile (the "
        "scale) of the model's log-density of its own samples, or to target_log_p nats.",
        "density",
        0.5,
        QUANTILE_SCALE,
        "0 (eta rescales eps per row)",
        combine=_combine,
        main=lambda gradient: Pass.DIVERGENCE,
        columns=("target",),
        plan_columns=_columns,
        takes=frozenset({"target_log_p"}),
        samplers=("heun",),
        conditional_model=False,
        start=_start,
        # every start at the median norm of the N(0, I) latent, so all begin at one log-density
        start_norm=lambda scale: dg.chi2_norm_quantile(0.5),
        slow_first_plan=True,
    )
)
