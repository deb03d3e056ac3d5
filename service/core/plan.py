"""Plans: everything fixed about a request's reverse process, one row of floats per network
evaluation (core/plan_columns.py names the columns), checked against the model once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch

from service.core import few_step
from service.core.errors import RequestError
from service.core.few_step import FEW_STEP
from service.core.guiders import GUIDERS, all_params, get_guider
from service.core.guiders.base import Guider, Pass, PlanContext
from service.core.guiders.conditional import check_guide_field, resolve_label
from service.core.guiders.weights import resolve_schedule, weight_column
from service.core.model import ReadyModel
from service.core.params import resolve_params
from service.core.plan_columns import (
    ACTIVE_COL,
    COEF,
    GUIDER_COLS,
    LABEL_COL,
    RENOISE_COL,
    T_COL,
    WIDTH,
    column_names,
)
from service.core.samplers import Sampler, get_sampler, sampler_params
from service.core.spacing import DEFAULT_SPACING, SPACINGS
from service.core.spec import SampleSpec

MAX_CACHED_PLANS = 1024


@dataclass(frozen=True)
class Plan:
    """`stages[p]` serves the evaluation with p evaluations after it (a chunk's `position`
    counts down from `evaluations - 1` to 0), so for ddpm stages[k] is schedule position k."""

    guider: Guider
    scale: float
    sampler: Sampler
    sampler_params: dict[str, float]
    guider_params: dict[str, float]
    steps: int  # S, positions on the (respaced) schedule
    spacing: str  # which of the model's timesteps the S positions are (core/spacing.py)
    stages: list[list[float]]  # stages[p] = the plan row of WIDTH floats (see the layout)
    # `stages` as a tensor on the model's device: a step gathers its chunks' rows from it by
    # index instead of building a tensor from nested Python floats (~3 us a chunk a step)
    table: torch.Tensor = field(repr=False, compare=False)
    main: Pass = Pass.FORWARD
    gradient: str | None = None  # the paper's variants: head, score or energy
    target_log_p: float | None = None  # Density Guidance: the final log-density asked for
    label: int | None = None  # a conditional model's class; None: the null class
    guide: ReadyModel | None = field(default=None, repr=False, compare=False)  # autoguidance
    schedule: str | None = None  # weighted guiders: the weight's schedule
    interval: tuple[float, float] | None = None  # weighted guiders: [sigma_lo, sigma_hi]
    start_norm: float | None = None  # density, prior: every start's norm

    @property
    def evaluations(self) -> int:
        """Network evaluations (NFE): the stages a chunk runs."""
        return len(self.stages)

    @cached_property  # read for every chunk of every step
    def names(self) -> dict[str, int]:
        return column_names(self.sampler.columns, self.guider.columns)

    @property
    def needs_gradient(self) -> bool:
        """Whether an evaluation costs more than one forward: a backward pass, or a reference
        guider's second forward (the batcher's cost model)."""
        return self.main != Pass.FORWARD or self.guider.reference is not None

    @property
    def guided_evaluations(self) -> int:
        """Evaluations that run the guider's reference pass too."""
        if self.guider.reference is None:
            return 0
        return sum(1 for row in self.stages if row[ACTIVE_COL] != 0.0)

    @property
    def final_target(self) -> float | None:
        """Density Guidance: the log-density every row is steered to (its last target)."""
        if "target" not in self.guider.columns:
            return None
        return self.stages[0][self.names["target"]]

    def active(self, position: int) -> bool:
        return self.stages[position][ACTIVE_COL] != 0.0


def _refuse_untaken(g: Guider, spec: SampleSpec, guide: ReadyModel | None) -> None:
    """A request field the guider does not take is refused, naming the guiders that do."""
    given = {
        "gradient": spec.gradient is not None,
        "target_log_p": spec.target_log_p is not None,
        "schedule": spec.schedule is not None or spec.interval is not None,
        "guide_model": guide is not None or spec.guide_model is not None,
    }
    fields = {"schedule": "guidance_interval" if spec.schedule is None else "guidance_schedule"}
    for what, present in given.items():
        if present and what not in g.takes:
            takers = [n for n, other in GUIDERS.items() if what in other.takes]
            raise RequestError(
                fields.get(what, what),
                f"{fields.get(what, what)} applies only to {' and '.join(takers)}, not {g.name!r}",
                "omitted for this variant",
            )


def resolve_scale(g: Guider, scale: float | None) -> float:
    if scale is None:
        return g.default_scale
    low, high = g.scale_range
    # NaN would sample NaN everywhere, inf NaN after one step
    if not (math.isfinite(scale) and low <= scale <= high):
        raise RequestError(
            "scale",
            f"scale of variant {g.name!r} must be a finite number in its range",
            f"[{low:g}, {high:g}]",
        )
    return float(scale)


def resolve_spacing(name: str | None, model: ReadyModel) -> str:
    if name is None:
        return DEFAULT_SPACING
    if name not in SPACINGS:
        raise RequestError("spacing", f"unknown spacing {name!r:.40}", f"one of {list(SPACINGS)}")
    if SPACINGS[name].per_model and model.tuned_spacing is None:
        why = model.tuned_spacing_error or "none was tuned for it (dgs tune-spacing)"
        others = [s for s, sp in SPACINGS.items() if not sp.per_model]
        raise RequestError(
            "spacing", f"model {model.name!r} has no {name} spacing: {why}", f"one of {others}"
        )
    return name


def _check_sampler(g: Guider, smp: Sampler, params: dict[str, float]) -> None:
    if g.samplers is not None and smp.name not in g.samplers:
        raise RequestError(
            "sampler",
            f"variant {g.name!r} does not run with sampler {smp.name!r}",
            " or ".join(g.samplers),
        )
    if g.deterministic_sampler and not smp.deterministic(params):
        raise RequestError("eta", f"variant {g.name!r} needs a deterministic sampler", "eta 0")


def make_plan(model: ReadyModel, spec: SampleSpec, guide: ReadyModel | None = None) -> Plan:
    """Check the request against the model and precompute its per-evaluation parameters.

    `guide`: autoguidance's guide model, loaded by the caller. Plans are cached on the model
    (up to MAX_CACHED_PLANS), so a server's event loop does no tensor work for a repeated
    request shape. A guider with `slow_first_plan` (Density Guidance calibrates, about a
    second) should be planned off an event loop.
    """
    g = get_guider(spec.variant)
    _refuse_untaken(g, spec, guide)
    gradient = g.gradient(model, spec.gradient) if g.gradient is not None else None
    scale = resolve_scale(g, spec.scale)
    if few_step.applies(spec, model.schedule.num_timesteps, g.samplers is None):
        smp, spacing = get_sampler(FEW_STEP.sampler), few_step.spacing_for(model)
        s_params = sampler_params(smp, FEW_STEP.sampler_params)
    else:
        smp, spacing = (
            get_sampler(spec.sampler or g.default_sampler),
            resolve_spacing(spec.spacing, model),
        )
        s_params = sampler_params(smp, spec.sampler_params)
    _check_sampler(g, smp, s_params)
    takers = {name: owners for name, (_, owners) in all_params().items()}
    g_params = resolve_params("guider_params", g.name, g.params, spec.guider_params, takers)
    if spec.target_log_p is not None and not math.isfinite(spec.target_log_p):
        raise RequestError("target_log_p", "target_log_p must be finite", "a finite number")
    label = resolve_label(model, g, spec.label)
    schedule, interval = resolve_schedule(g, spec.schedule, spec.interval)
    check_guide_field(model, g, guide)
    if g.check is not None:
        g.check(model, spec, guide)
    key = (g.name, scale, spec.steps, spacing, smp.name, tuple(sorted(s_params.items())))
    key += (gradient,)
    key += (tuple(sorted(g_params.items())), spec.target_log_p, label)
    key += (None if guide is None else guide.id, schedule, interval)
    if key in model.plans:
        return model.plans[key]
    s = model.schedule_for(spec.steps, spacing)
    stages = smp.stages(s, s_params)
    weight = weight_column(model, stages.t, scale, schedule, interval) if g.weighted else None
    ctx = PlanContext(model, s, smp, stages, scale, g_params, spec, gradient, weight)
    columns = g.plan_columns(ctx) if g.plan_columns is not None else {}
    E = len(stages.t)
    table = torch.zeros(E, WIDTH, dtype=torch.float32)
    table[:, COEF] = stages.coef.float()
    table[:, T_COL] = stages.t.float()
    table[:, LABEL_COL] = float(model.null_label if label is None else label)
    if g.reference is not None:
        active = columns.pop("active", None)
        table[:, ACTIVE_COL] = (weight != 1.0 if active is None else active).float()
    table[:, RENOISE_COL] = stages.renoise.float()
    for i, name in enumerate(g.columns):
        table[:, GUIDER_COLS.start + i] = columns[name].float()
    table = table.flip(0)  # stages[p]: p evaluations left after it
    plan = Plan(
        g,
        scale,
        smp,
        s_params,
        g_params,
        s.num_steps,
        spacing,
        table.tolist(),
        table.contiguous().to(model.device),
        g.main(gradient),
        gradient,
        spec.target_log_p,
        label,
        guide,
        schedule,
        interval,
        None if g.start_norm is None else g.start_norm(scale),
    )
    if len(model.plans) < MAX_CACHED_PLANS:
        model.plans[key] = plan
    return plan
