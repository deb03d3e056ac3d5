"""How long a denoising step took, as the step loop reports it to admission, the priority share,
Retry-After and the metrics.

In production the step is timed (`measured`). `modeled(cost)` runs the same step but reports the
time `cost` predicts for it instead, so that everything that learns from step times (admission's
correction factor, the batch class's minimum share) no longer depends on the machine's speed or
its other load: the tests set it, in process or through `FIXED_STEP_COST`, to get the same
decisions on a busy 2-core VM as on an idle workstation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.core.model import ReadyModel
from service.core.step import RowChunk, advance
from service.serving.admission import Cost

# Runs one step of `chunks` on the model; -> the seconds it is said to have taken
StepRunner = Callable[[ReadyModel, list[RowChunk]], float]


def measured(model: ReadyModel, chunks: list[RowChunk]) -> float:
    t0 = time.perf_counter()
    advance(model, chunks)
    return time.perf_counter() - t0


def predicted_seconds(cost: Cost, chunks: list[RowChunk]) -> float:
    """What `cost` says a step of these chunks takes: its overhead plus each row's cost."""
    return cost.step + sum(c.rows * cost.per_row(c.plan.needs_gradient) for c in chunks)


def modeled(cost: Cost) -> StepRunner:
    def run(model: ReadyModel, chunks: list[RowChunk]) -> float:
        advance(model, chunks)
        return predicted_seconds(cost, chunks)

    return run
