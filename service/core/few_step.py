"""The few-step default: what a request that names `steps` (< T) but neither a sampler nor a
spacing runs with (docs/DESIGN.md#4-samplers). A request that names nothing keeps the model's
T-step DDPM bit for bit; one that names a sampler or a spacing gets exactly what it named.

The choice is measured, not assumed: the (sampler, spacing) that reached 100-step DDPM's quality
at the fewest network evaluations over the four paper datasets (docs/RESULTS.md, "Few-step
sampling"; `python -m experiments.few_step`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.core.model import ReadyModel
from service.core.samplers import get_sampler, sampler_params
from service.core.spacing import TUNED
from service.core.spec import SampleSpec


@dataclass(frozen=True)
class FewStepDefault:
    sampler: str
    spacing: str  # where the model has it (a tuned spacing), else `fallback_spacing`
    fallback_spacing: str
    sampler_params: dict[str, float] = field(default_factory=dict)
    why: str = ""


FEW_STEP = FewStepDefault(
    "dpmpp_2m_sde",
    TUNED,
    "uniform",
    {},
    "the best measured at <= 10 network evaluations: at 10 NFE within 0.05 bits of 100-step "
    "DDPM's KL on circle, dino and moons, where no other (sampler, spacing) is; on line within "
    "it too (DPM-Solver++(3M) SDE is 0.011 bits ahead) (docs/RESULTS.md, Few-step sampling)",
)


def spacing_for(model: ReadyModel) -> str:
    return FEW_STEP.spacing if model.tuned_spacing is not None else FEW_STEP.fallback_spacing


def applies(spec: SampleSpec, T: int, runs_with_every_sampler: bool) -> bool:
    """Whether a request gets the few-step default: it names steps below T and nothing else of
    how to run them, for a variant that runs with every sampler (the others keep their own
    default sampler)."""
    named = spec.sampler is not None or spec.spacing is not None or bool(spec.sampler_params)
    return runs_with_every_sampler and not named and spec.steps is not None and spec.steps < T


def resolved_params(default: FewStepDefault) -> dict[str, float]:
    """Its sampler's parameters with the sampler's own defaults filled in."""
    return sampler_params(get_sampler(default.sampler), default.sampler_params)
