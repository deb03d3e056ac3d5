"""A sampling request as the batchers see it, the errors that end one, and its callback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.core.plan import Plan
from service.core.step import RowChunk
from service.serving.admission import Ticket


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"queue full, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Exception):
    pass


class BatcherStopped(Exception):
    pass


class Cancelled(Exception):
    pass


class Hooks(Protocol):
    def on_step(
        self, dataset: str, rows: int, admitted: int, seconds: float, interactive_rows: int
    ) -> None: ...
    def on_load(self, dataset: str, key: int, queued_rows: int, active_rows: int) -> None: ...


@dataclass(eq=False)
class Job:
    plan: Plan
    n: int
    seed: int
    deadline: float  # time.monotonic()
    on_done: Callable[[Job], None]  # called once, from the engine thread
    chunks: list[RowChunk] = field(default_factory=list)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    samples: np.ndarray | None = None
    nonfinite: int = 0
    log_p: np.ndarray | None = None  # density: each row's tracked log-density
    error: Exception | None = None
    cancelled: bool = False
    done_prefix: int = 0  # chunks before this index are finished
    ticket: Ticket | None = None  # its share of the server's admitted work
    priority: str = "batch"  # "interactive" or "batch" (service/serving/priority.py)
    # Called from the engine thread after each step that ran some of its rows and left it
    # unfinished (a stream's progress and previews); must be quick and must not raise.
    on_step: Callable[[Job], None] | None = None

    def first_unfinished(self) -> int:
        """Index of the first unfinished chunk: chunks start and finish in order, so the
        finished ones are a prefix and the scan is amortised O(1) per step."""
        i = self.done_prefix
        while i < len(self.chunks) and self.chunks[i].done:
            i += 1
        self.done_prefix = i
        return i

    @property
    def progress(self) -> float:
        """Fraction of its row-evaluations done: 0 before its first step, 1 when finished."""
        total = self.n * self.plan.evaluations
        if not total or not self.chunks:
            return 0.0
        left = sum(c.rows * (c.position + 1) for c in self.chunks)
        return 1.0 - left / total

    @property
    def remaining_rows(self) -> int:
        return sum(c.rows for c in self.chunks if not c.done)

    @property
    def queue_seconds(self) -> float:
        return (self.started or self.finished or time.monotonic()) - self.submitted

    @property
    def compute_seconds(self) -> float:
        return 0.0 if self.started is None else (self.finished or time.monotonic()) - self.started


def future_callback(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future
) -> Callable[[Job], None]:
    """A Job.on_done that resolves an asyncio future on its loop, from any thread."""

    def done(job: Job) -> None:
        def resolve() -> None:
            if future.done():
                return
            if job.error is not None:
                future.set_exception(job.error)
            else:
                future.set_result(job)

        loop.call_soon_threadsafe(resolve)

    return done
