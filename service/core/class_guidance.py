"""Class-conditional sampling (issue 15): a request's class, its guidance weight per evaluation,
and the reference predictions of `cfg` and `autoguidance` (core/guidance.py states the rule).

`core.sampling.advance` calls `apply_reference` once per step for every chunk of these variants
together: one extra forward for the rows whose weight is not 1 at their current evaluation (the
null class on the same model for cfg, the guide model for autoguidance), then
eps <- eps_ref + w (eps - eps_ref) on those rows. Rows outside their guidance interval run the
conditional model alone, so an interval also saves network passes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

import torch

from service.core.classes import CLASSES, class_names
from service.core.errors import RequestError
from service.core.guidance import REFERENCED_KINDS, Variant
from service.core.model import ReadyModel

if TYPE_CHECKING:
    from service.core.sampling import RowChunk

SIGMA_LIMIT = 1e4  # |sigma| bound of a guidance interval; the schedules reach ~15


def resolve_label(model: ReadyModel, variant: Variant, label: int | str | None) -> int | None:
    """The class index a request samples (None: the null class, unconditional), or the
    RequestError naming `class` and what the model offers."""
    if model.num_classes == 0:
        if label is not None:
            raise RequestError(
                "class",
                f"model {model.name!r} is not class-conditional",
                "omitted; a class needs a conditional model (objective 'conditional')",
            )
        if variant.kind in REFERENCED_KINDS:
            raise RequestError(
                "variant",
                f"variant {variant.name!r} needs a class-conditional model, and {model.name!r} "
                "is unconditional",
                "a model of objective 'conditional' (datasets boxes, gaussians, moons)",
            )
        return None
    names = class_names(model.dataset) if model.dataset in CLASSES else ()
    offered = f"0..{model.num_classes - 1}" + (f" or {list(names)}" if names else "")
    if variant.kind == "density":
        raise RequestError(
            "variant", "variant 'density' does not run on class-conditional models", "not density"
        )
    if label is None:
        if variant.kind == "cfg":
            raise RequestError("class", "variant 'cfg' needs a class", offered)
        return None
    if isinstance(label, str):
        if label not in names:
            raise RequestError("class", f"unknown class of model {model.name!r}", offered)
        return names.index(label)
    if not 0 <= label < model.num_classes:
        raise RequestError("class", f"class out of range for model {model.name!r}", offered)
    return label


def check_reference(
    model: ReadyModel,
    variant: Variant,
    guide: ReadyModel | None,
    interval: tuple[float, float] | None,
) -> None:
    """A guide only for autoguidance, of the same schedule and classes; an interval only for
    the two referenced variants, with 0 <= sigma_lo < sigma_hi."""
    if interval is not None:
        if variant.kind not in REFERENCED_KINDS:
            raise RequestError(
                "guidance_interval",
                f"guidance_interval applies only to {' and '.join(REFERENCED_KINDS)}",
                "omitted for this variant",
            )
        lo, hi = interval
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi <= SIGMA_LIMIT):
            raise RequestError(
                "guidance_interval",
                "guidance_interval must be [sigma_lo, sigma_hi] with 0 <= sigma_lo < sigma_hi",
                f"0 <= sigma_lo < sigma_hi <= {SIGMA_LIMIT:g}",
            )
    if variant.kind != "autoguidance":
        if guide is not None:
            raise RequestError("guide_model", "guide_model applies only to autoguidance", "omitted")
        return
    if guide is None:
        raise RequestError("guide_model", "autoguidance needs a guide model", "a conditional model")
    if guide is model or guide.id == model.id:
        raise RequestError("guide_model", "a model cannot guide itself", "another model")
    same = guide.schedule.config == model.schedule.config
    if not same or guide.num_classes != model.num_classes or guide.is_energy:
        raise RequestError(
            "guide_model",
            f"guide {guide.name!r} must share {model.name!r}'s schedule and classes "
            f"({model.num_classes}) and predict eps",
            f"a conditional model of {model.dataset!r} with schedule {model.schedule.config.kind}",
        )


def weight_column(
    model: ReadyModel, t: torch.Tensor, scale: float, interval: tuple[float, float] | None
) -> torch.Tensor:
    """w per evaluation (its network timesteps `t`): the scale inside the interval, else 1."""
    ab = model.schedule.alpha_bar.double().cpu()[t.cpu()]
    sigma = (1 / ab - 1).sqrt()
    w = torch.full((len(t),), float(scale), dtype=torch.float64)
    if interval is not None:
        inside = (sigma >= interval[0]) & (sigma <= interval[1])
        w = torch.where(inside, w, torch.ones_like(w))
    return w


def apply_reference(
    model: ReadyModel,
    chunks: list[tuple[int, RowChunk]],
    x: torch.Tensor,
    eps: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor | None,
    weights: torch.Tensor,
    t_uniform: int | None,
    eps_fn,
) -> None:
    """eps <- eps_ref + w (eps - eps_ref), in place, on the rows of `chunks` ((first row, chunk)
    pairs of the step's batch) whose weight is not 1 now. One pass per reference model."""
    groups: dict[int, list[tuple[int, RowChunk]]] = defaultdict(list)
    refs: dict[int, ReadyModel] = {}
    for start, c in chunks:
        ref = c.plan.guide or model
        groups[id(ref)].append((start, c))
        refs[id(ref)] = ref
    for key, members in groups.items():
        ref = refs[key]
        if len(members) == 1:
            s0, c0 = members[0]
            rows: slice | torch.Tensor = slice(s0, s0 + c0.rows)
        else:
            rows = torch.cat([torch.arange(s, s + c.rows, device=x.device) for s, c in members])
        if ref is model:  # cfg: the same network, every row the null class
            ref_labels, label_uniform = None, model.null_label
        else:  # autoguidance: the guide, each row its own class
            ref_labels, label_uniform = (None if labels is None else labels[rows]), None
        eps_ref, _ = eps_fn(ref, x[rows], t[rows], False, t_uniform, ref_labels, label_uniform)
        w = weights[rows][:, None]
        eps[rows] = eps_ref + w * (eps[rows] - eps_ref)
