"""Priority classes inside the denoising step: interactive rows first, batch rows never starved.

Every request is `interactive` or `batch` (README "Batching" says how the class is chosen).
Each step's row budget is filled in this order (`select_prioritized`):

1. interactive requests, most urgent first (`ORDERS`: earliest deadline, or least remaining
   work), each up to the per-request cap;
2. batch requests, round-robin among themselves (the fair share of `select_chunks`), with only
   as many rows as keep the step's predicted time within `FILL_SLACK` of the interactive rows
   alone (`fill_rows`). On the CPU a step's time grows with its rows, so this admits almost no
   batch rows next to interactive ones; on a GPU, where a step of a few thousand rows costs
   what one of sixteen does, it admits nearly the whole budget for free;
3. the minimum share: while batch requests wait, the batch class gets at least
   `min_share` of the engine's step time over the last `WINDOW_S` seconds
   (`ClassShare.batch_turn`). When it falls below, the next step is a full batch step
   (interactive rows still ride in it), so a batch request is never starved.

With no interactive request anywhere in the server, batch requests get the whole budget, as
before. `ClassShare` is server-wide, like admission: interactive requests on one model hold
back another model's batch steps, because all models share one engine thread.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from service.core.step import RowChunk
from service.serving.job import Job

PRIORITY_CLASSES = ("interactive", "batch")
# A step that carries interactive rows may take this much longer, to let batch rows fill it.
FILL_SLACK = 0.25
WINDOW_S = 1.0  # the batch class's minimum share is kept over about this much step time


def classify(n: int, requested: str | None, interactive_max_n: int) -> str:
    """The class a request runs in: the one it asked for, else interactive up to
    `interactive_max_n` rows (the caller has refused an interactive request above it)."""
    if requested is not None:
        return requested
    return "interactive" if n <= interactive_max_n else "batch"


def _by_deadline(job: Job) -> tuple[float, float]:
    return (job.deadline, job.submitted)


def _by_remaining(job: Job) -> tuple[float, float]:
    """Row-evaluations left: a half-done request of 256 rows before a fresh one of 16."""
    return (job.n * job.plan.evaluations * (1.0 - job.progress), job.submitted)


ORDERS: dict[str, Callable[[Job], tuple[float, float]]] = {
    "deadline": _by_deadline,
    "remaining": _by_remaining,
}


def fill_rows(interactive_rows: int, step_s: float, row_s: float) -> int:
    """Batch rows a step with `interactive_rows` may add while its predicted time
    (step_s + rows * row_s) stays within FILL_SLACK of the interactive rows alone."""
    if row_s <= 0:
        return 1 << 30
    return int(FILL_SLACK * (step_s / row_s + interactive_rows))


def _take_in_order(jobs: list[Job], budget: int, cap: int, chosen: list[RowChunk]) -> int:
    """Each job's unfinished chunks in order, up to `cap` rows a job; -> rows used."""
    used = 0
    for job in jobs:
        taken = 0
        for chunk in job.chunks[job.first_unfinished() :]:
            if chunk.done:
                continue
            if used + chunk.rows > budget or taken + chunk.rows > cap:
                break
            chosen.append(chunk)
            used += chunk.rows
            taken += chunk.rows
        if used >= budget:
            break
    return used


def select_prioritized(
    jobs: list[Job],
    budget: int,
    cap: int,
    batch_rows: Callable[[int], int],
    order: str,
    fair: Callable[[list[Job], int, int], list[RowChunk]],
) -> list[RowChunk]:
    """One step's chunks: interactive first in `order`, then batch rows, at most
    `batch_rows(interactive rows chosen)` of them, shared by `fair` (select_chunks)."""
    interactive = sorted((j for j in jobs if j.priority == "interactive"), key=ORDERS[order])
    chosen: list[RowChunk] = []
    used = _take_in_order(interactive, budget, cap, chosen)
    room = min(budget - used, batch_rows(used))
    batch = [j for j in jobs if j.priority != "interactive"]
    if room > 0 and batch:
        chosen += fair(batch, room, cap)
    return chosen


class ClassShare:
    """Server-wide: how many requests of each class wait, and the batch class's recent share
    of step time while batch requests wait. Thread-safe (the engine thread and the event
    loop's submissions both touch it)."""

    def __init__(self, min_share: float = 0.1, window_s: float = WINDOW_S) -> None:
        if not 0 <= min_share < 1:
            raise ValueError(f"min_share must be in [0, 1), got {min_share}")
        self.min_share = min_share
        self.window_s = window_s
        self._lock = threading.Lock()
        self._waiting = dict.fromkeys(
            PRIORITY_CLASSES, 0
        )  # jobs queued in any batcher, not finished
        self._batch_s = 0.0  # decayed step seconds spent on batch rows while batch waited
        self._total_s = 0.0  # decayed step seconds while batch waited

    @property
    def interactive_waiting(self) -> bool:
        return self._waiting["interactive"] > 0

    def joined(self, priority: str) -> None:
        with self._lock:
            self._waiting[priority] += 1

    def left(self, priority: str) -> None:
        with self._lock:
            self._waiting[priority] -= 1

    def batch_turn(self) -> bool:
        """Whether the batch class is below its minimum share and gets the next step (a batch
        request's first step comes at once: no share is owed before it)."""
        with self._lock:
            return self._total_s == 0 or self._batch_s < self.min_share * self._total_s

    def record(self, seconds: float, batch_rows: int, rows: int) -> None:
        """One step's time, `batch_rows` of its `rows` from batch requests."""
        with self._lock:
            if not self._waiting["batch"]:
                self._batch_s = self._total_s = 0.0
                return
            decay = math.exp(-seconds / self.window_s)
            self._total_s = self._total_s * decay + seconds
            self._batch_s = self._batch_s * decay + seconds * batch_rows / max(rows, 1)
