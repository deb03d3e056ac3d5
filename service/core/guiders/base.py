"""The guider interface: what a guidance method asks of a denoising step, and how it combines
what it gets into the eps the sampler consumes (docs/DESIGN.md#6-guidance).

A guider declares
- its network passes: the `main` pass every row takes (a forward; a forward with the density
  head's input gradient; or eps with its exact divergence) and an optional `reference`: the
  same model at the null class, or a guide model at the row's class. The step runs a reference
  only for rows whose plan marks the evaluation `active`; elsewhere the guider is the identity
  on the conditional eps and costs no second pass (a guidance interval saves passes);
- its per-row state (`state_width` floats carried between evaluations: an EMA, a momentum);
- its parameters with their ranges (`params`: they feed /variants, OpenAPI and the 422s) and the
  request fields it takes beyond them (`takes`);
- its weight over the noise levels (`weighted`: the plan's `weight` column from a schedule in
  core/guiders/weights.py) and its other per-evaluation columns (`plan_columns`);
- `combine`, a pure function of one step's rows of this guider -> their eps and new state.

The step (core/step.py) groups a batch's rows by these declarations, never by a guider's name:
one pass of each kind for all rows that ask for it, then one `combine` call per guider.
Diffusers' guiders (one file per method behind BaseGuidance, `forward(pred_cond, pred_uncond)`)
and k-diffusion's model wrappers are the models; neither batches rows of different methods.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from service.core.model import ReadyModel
from service.core.params import Param
from service.core.samplers import Sampler, Stages
from service.core.schedule import Schedule

if TYPE_CHECKING:
    from service.core.spec import SampleSpec


class Pass(enum.IntEnum):
    """The main network pass of a row, in the order the step runs them."""

    HEAD_GRADIENT = 0  # eps and grad_x log p_hat: a forward and the hand-written backward
    FORWARD = 1  # eps at the row's class: one forward, no graph
    DIVERGENCE = 2  # eps and div_x eps by autograd, one chunk at a time


class Reference(enum.Enum):
    """The second prediction a guider compares the conditional one with."""

    UNCONDITIONAL = "unconditional"  # the same model at the null class
    GUIDE = "guide"  # the guide model (autoguidance) at the row's class


@dataclass
class GuidedRows:
    """One guider's rows of a step, contiguous in the batch: what `combine` reads."""

    model: ReadyModel
    x: torch.Tensor  # (B, 2) x_t
    eps: torch.Tensor  # (B, 2) the conditional prediction
    t: torch.Tensor  # (B,) long
    columns: torch.Tensor  # (B, plan width) each row's plan row (core/plan.py names them)
    names: Mapping[str, int]  # column name -> index in `columns`
    state: torch.Tensor  # (B, state_width); zeros where a chunk has none yet
    chunks: list[Any]  # the RowChunks, in batch order (per-chunk work: Density Guidance)
    reference: torch.Tensor | None = None  # (B, 2) the reference prediction, if it ran
    head_gradient: torch.Tensor | None = None  # (B, 2) grad_x log p_hat (Pass.HEAD_GRADIENT)
    divergence: torch.Tensor | None = None  # (B,) div_x eps (Pass.DIVERGENCE)

    def column(self, name: str) -> torch.Tensor:
        """A named per-row plan column as (B, 1), float32."""
        i = self.names[name]
        return self.columns[:, i : i + 1]


# (rows) -> (eps (B, 2), new state (B, state_width) or None)
CombineFn = Callable[[GuidedRows], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass(frozen=True)
class PlanContext:
    """What a guider sees while a plan is built: it returns its per-evaluation columns."""

    model: ReadyModel
    schedule: Schedule  # the (respaced) schedule the plan runs on
    sampler: Sampler
    stages: Stages
    scale: float
    params: Mapping[str, float]
    spec: SampleSpec
    gradient: str | None
    weight: torch.Tensor | None  # (E,) float64: weighted guiders' w per evaluation


@dataclass(frozen=True)
class Guider:
    name: str
    description: str
    family: str  # shown in /variants: "paper", "density", "prior", "cfg", ...
    default_scale: float
    scale_range: tuple[float, float]
    scale_text: str  # what the scale is, as a formula (/variants' "gamma")
    combine: CombineFn | None = None  # None: eps unchanged (baseline, prior)
    main: Callable[[str | None], Pass] = lambda gradient: Pass.FORWARD  # by the gradient
    reference: Reference | None = None
    weighted: bool = False  # takes a guidance schedule (core/guiders/weights.py)
    state_width: int = 0
    columns: tuple[str, ...] = ()  # its plan columns, at most GUIDER_SLOTS
    # (context) -> {column: (E,) in evaluation order}, and whether the evaluation is active
    plan_columns: Callable[[PlanContext], dict[str, torch.Tensor]] | None = None
    params: dict[str, Param] = field(default_factory=dict)
    # optional request fields it takes: "gradient", "target_log_p", "guide_model", "schedule"
    takes: frozenset[str] = frozenset()
    # None: every sampler (ddpm first); else the samplers it runs with, its default first
    samplers: tuple[str, ...] | None = None
    deterministic_sampler: bool = False  # refuses a sampler drawing fresh noise
    needs_class: bool = False  # refuses the null class
    conditional_model: bool | None = None  # True: needs one; False: refuses one; None: either
    # the paper's variants: (model, gradient asked) -> the gradient it runs with
    gradient: Callable[[ReadyModel, str | None], str | None] | None = None
    check: Callable[[ReadyModel, SampleSpec, Any], None] | None = None  # (model, spec, guide)
    start: Callable[[ReadyModel, Any, Any], None] | None = None  # (model, plan, chunk)
    start_norm: Callable[[float], float] | None = None  # (scale) -> every start's norm
    slow_first_plan: bool = False  # its first plan calibrates (~1 s): plan it off the loop
    # the objective of the dataset's model a request runs on when it names none, by gradient
    objective: Callable[[str | None], str] = lambda gradient: "plain"
    smoothing: float | None = None  # the paper's smoothed EMA weight, shown in /variants
    # the paper's variants: gamma_t as (t (B,), T, scale) -> (B,), shown in /variants
    gamma: Callable[[torch.Tensor, int, float], torch.Tensor] | None = None

    @property
    def default_sampler(self) -> str:
        return self.samplers[0] if self.samplers else "ddpm"

    @property
    def needs_gradient(self) -> bool:
        """Takes a density gradient g (the `gradient` field)."""
        return self.gradient is not None
