"""The offline reverse process: all of a request's chunks stepped together until done, through
the batcher's own loop body (core/step.py), so a request gives the same numbers offline and
served."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from service.core.model import ReadyModel
from service.core.plan import make_plan
from service.core.spec import SampleSpec
from service.core.step import RowChunk, advance, make_chunks


@dataclass(frozen=True)
class SampleResult:
    samples: np.ndarray  # (n, 2) float32; non-finite rows kept as they are
    nonfinite: int  # rows with any non-finite coordinate
    seconds: float  # wall time of the whole reverse process
    variant: str
    scale: float
    seed: int
    model: str
    sampler: str = "ddpm"
    steps: int = 0  # S
    evaluations: int = 0  # NFE
    gradient: str | None = None
    # density: each row's log-density tracked along its path (nats), and the target
    log_p: np.ndarray | None = None
    target_log_p: float | None = None
    label: int | None = None  # a conditional model's class (None: unconditional)
    spacing: str = "uniform"  # the timesteps' spacing (core/spacing.py)
    sampler_params: dict[str, float] = field(default_factory=dict)


def count_nonfinite(samples: np.ndarray) -> int:
    return int((~np.isfinite(samples).all(axis=1)).sum())


def collect(chunks: list[RowChunk]) -> np.ndarray:
    """The finished chunks' rows, in request order, as float32 (n, 2) on the host."""
    return torch.cat([c.x for c in chunks]).cpu().numpy().astype(np.float32, copy=False)


def collect_log_p(chunks: list[RowChunk]) -> np.ndarray | None:
    """Density Guidance's tracked log-densities in request order (float64), else None."""
    if chunks[0].tracking is None:
        return None
    return torch.cat([c.tracking.log_p for c in chunks]).cpu().numpy().astype(np.float64)


def sample(
    model: ReadyModel,
    spec: SampleSpec,
    guide: ReadyModel | None = None,
    on_evaluation: Callable[[int, int], None] | None = None,
) -> SampleResult:
    """Sample `spec.n` points as `spec` asks (`guide`: autoguidance's guide model), all chunks
    at once; `on_evaluation(done, of)` after each evaluation (e.g. a progress bar)."""
    if spec.n < 1:
        raise ValueError(f"n must be >= 1, got {spec.n}")
    plan = make_plan(model, spec, guide)
    start = time.perf_counter()
    chunks = make_chunks(plan, spec.n, spec.seed, model.device)
    done = 0
    while not chunks[0].done:
        advance(model, chunks)
        done += 1
        if on_evaluation is not None:
            on_evaluation(done, plan.evaluations)
    out = collect(chunks)  # syncs the device
    seconds = time.perf_counter() - start
    return SampleResult(
        out,
        count_nonfinite(out),
        seconds,
        plan.guider.name,
        plan.scale,
        spec.seed,
        model.name,
        plan.sampler.name,
        plan.steps,
        plan.evaluations,
        plan.gradient,
        collect_log_p(chunks),
        plan.final_target,
        plan.label,
        plan.spacing,
        plan.sampler_params,
    )
