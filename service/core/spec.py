"""One frozen request: what to sample, built once by the API or the CLI and passed whole to
planning (core/plan.py), the offline `sample` and `evaluate`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SampleSpec:
    variant: str = "baseline"  # the guider's registered name (core/guiders)
    scale: float | None = None  # the guider's scale; None: its default
    n: int = 1000
    seed: int = 0
    steps: int | None = None  # S on the respaced schedule; None: the model's T
    sampler: str | None = None  # None: the guider's default sampler
    sampler_params: Mapping[str, float] = field(default_factory=dict)  # e.g. {"eta": 0.5}
    spacing: str | None = None  # which timesteps a respaced run keeps (core/spacing.py)
    guider_params: Mapping[str, float] = field(default_factory=dict)  # e.g. {"momentum": -0.5}
    gradient: str | None = None  # the paper's variants: head, score or energy
    target_log_p: float | None = None  # Density Guidance: an absolute target (nats)
    label: int | str | None = None  # a class-conditional model's class; None: the null class
    schedule: str | None = None  # weighted guiders: the weight's schedule over sigma
    interval: tuple[float, float] | None = None  # [sigma_lo, sigma_hi] of the schedule
    guide_model: str | None = None  # autoguidance: the guide's name (the caller loads it)
