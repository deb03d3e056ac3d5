"""Step-level (continuous) batching: one scheduler thread per model, no HTTP in sight.

Every denoising step the scheduler picks rows from all unfinished requests, each row at its
own timestep, and runs them in one batch (`core.sampling.advance`). New requests join at the
next step; finished rows leave at once. Rows move in chunks (<= CHUNK_ROWS rows of one
request) because a chunk carries its own random stream and guidance state, which is why a
request's samples do not depend on what it was batched with, or on being paused.

Fair share (`select_chunks`): rows are handed out round-robin, one chunk per request per
round in arrival order, until the step's row budget is spent; chunks already under way go
first. With m requests waiting, each gets about budget/m rows a step (never more than the
per-request cap), so a request of n = 100,000 cannot starve one of n = 16.

`mode="request"` is the classic static batcher kept for comparison: after a short window,
whole requests start together and run to the end before the next batch is formed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.core.model import ReadyModel
from service.core.sampling import Plan, RowChunk, advance, collect, count_nonfinite, make_chunks

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"queue full, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Exception):
    pass


class SchedulerStopped(Exception):
    pass


class Cancelled(Exception):
    pass


class Hooks(Protocol):
    def on_step(self, dataset: str, rows: int, admitted: int, seconds: float) -> None: ...
    def on_load(self, dataset: str, key: int, queued_rows: int, active_rows: int) -> None: ...


@dataclass(eq=False)
class Job:
    plan: Plan
    n: int
    seed: int
    deadline: float  # time.monotonic()
    on_done: Callable[[Job], None]  # called once, from the scheduler thread
    chunks: list[RowChunk] = field(default_factory=list)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    samples: np.ndarray | None = None
    nonfinite: int = 0
    error: Exception | None = None
    cancelled: bool = False

    @property
    def remaining_rows(self) -> int:
        return sum(c.rows for c in self.chunks if not c.done)

    @property
    def queue_seconds(self) -> float:
        return (self.started or self.finished or time.monotonic()) - self.submitted

    @property
    def compute_seconds(self) -> float:
        return 0.0 if self.started is None else (self.finished or time.monotonic()) - self.started


def select_chunks(jobs: list[Job], budget: int, per_job_cap: int) -> list[RowChunk]:
    """Round-robin fair share of one step's rows; see the module docstring."""
    queues = []
    for job in jobs:
        pending = [c for c in job.chunks if not c.done]
        pending.sort(key=lambda c: not c.started)  # stable: under-way chunks first, in order
        queues.append([job, pending, 0])
    chosen: list[RowChunk] = []
    used = 0
    progress = True
    while progress and used < budget:
        progress = False
        for entry in queues:
            _, pending, taken = entry
            if not pending:
                continue
            chunk = pending[0]
            if used + chunk.rows > budget or taken + chunk.rows > per_job_cap:
                continue
            chosen.append(pending.pop(0))
            entry[2] = taken + chunk.rows
            used += chunk.rows
            progress = True
    return chosen


class ModelScheduler:
    """Owns one model's queue and step loop; `submit` and `cancel` are thread-safe."""

    _keys = itertools.count()

    def __init__(
        self,
        model: ReadyModel,
        hooks: Hooks,
        mode: str = "step",
        max_rows_per_step: int = 4096,
        max_rows_per_request_step: int | None = None,
        max_queued_rows: int = 400_000,
        batch_window_s: float = 0.005,
    ):
        if mode not in ("step", "request"):
            raise ValueError(f"batching mode must be 'step' or 'request', got {mode!r}")
        self.model = model
        self.hooks = hooks
        self.mode = mode
        self.budget = max_rows_per_step
        self.cap = max_rows_per_request_step or max_rows_per_step
        self.max_queued_rows = max_queued_rows
        self.batch_window_s = batch_window_s
        self.key = next(self._keys)
        self._cv = threading.Condition()
        self._jobs: list[Job] = []  # arrival order
        self._batch: list[Job] = []  # request mode: the batch being run
        self._queued_rows = 0
        self._stopping = False
        self._row_steps_per_s = 0.0  # smoothed throughput, for Retry-After
        self._active_rows = 0
        self._thread = threading.Thread(target=self._loop, name=f"sched-{model.name}", daemon=True)

    def start(self) -> ModelScheduler:
        self._thread.start()
        return self

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking jobs; with `drain`, finish the ones in hand first."""
        with self._cv:
            self._stopping = True
            if not drain:
                for job in self._jobs:
                    job.error = SchedulerStopped("model unloaded")
            self._cv.notify_all()
        self._thread.join(timeout)

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def retry_after(self) -> int:
        """Seconds until the queue should have room: queued row-steps over the measured rate."""
        rate = self._row_steps_per_s or 1e5
        steps = self.model.schedule.num_steps
        return int(min(60, max(1, math.ceil(self._queued_rows * steps / rate / 2))))

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._stopping:
                raise SchedulerStopped(f"model {self.model.name} is being unloaded")
            if self._queued_rows + job.n > self.max_queued_rows:
                raise QueueFull(self.retry_after())
            job.chunks = make_chunks(job.plan, job.n, job.seed, self.model.device)
            self._jobs.append(job)
            self._queued_rows += job.n
            self._cv.notify_all()
        self._report_load(active_rows=None)

    def cancel(self, job: Job) -> None:
        with self._cv:
            job.cancelled = True
            self._cv.notify_all()

    # -- the scheduler thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cv:
                if not self._jobs:
                    self._report_load(active_rows=0)
                while not self._jobs and not self._stopping:
                    self._cv.wait()
                if not self._jobs and self._stopping:
                    return
            try:
                self._retire_dead_jobs()
                chosen = self._choose()
                if chosen:
                    self._step(chosen)
            except Exception as e:  # never let one bad step kill the model's loop
                log.exception("scheduler step failed for %s", self.model.name)
                self._fail_all(e)

    def _choose(self) -> list[RowChunk]:
        if self.mode == "step":
            with self._cv:
                jobs = list(self._jobs)
            return select_chunks(jobs, self.budget, self.cap)
        if not any(j for j in self._batch if not j.finished):
            self._batch = self._form_batch()
        return [c for j in self._batch for c in j.chunks if not c.done]

    def _form_batch(self) -> list[Job]:
        """Request mode: wait out the window after the oldest arrival, then take whole jobs."""
        with self._cv:
            if not self._jobs:
                return []
            wait = self._jobs[0].submitted + self.batch_window_s - time.monotonic()
            if wait > 0:
                self._cv.wait(wait)
            batch, rows = [], 0
            for job in self._jobs:
                if batch and rows + job.n > self.budget:
                    break
                batch.append(job)
                rows += job.n
            return batch

    def _step(self, chosen: list[RowChunk]) -> None:
        now = time.monotonic()
        owners = {id(c): j for j in self._jobs_snapshot() for c in j.chunks}
        admitted = sum(c.rows for c in chosen if not c.started)
        for c in chosen:
            job = owners[id(c)]
            if job.started is None:
                job.started = now
        t0 = time.perf_counter()
        advance(self.model, chosen)
        seconds = time.perf_counter() - t0
        rows = sum(c.rows for c in chosen)
        rate = rows / max(seconds, 1e-6)
        self._row_steps_per_s = (
            rate if not self._row_steps_per_s else (0.8 * self._row_steps_per_s + 0.2 * rate)
        )
        self._safe_hook(self.hooks.on_step, self.model.dataset, rows, admitted, seconds)
        for job in {id(owners[id(c)]): owners[id(c)] for c in chosen}.values():
            if all(c.done for c in job.chunks):
                samples = collect(job.chunks)
                job.samples, job.nonfinite = samples, count_nonfinite(samples)
                self._finish(job)
        self._report_load(active_rows=rows)

    def _jobs_snapshot(self) -> list[Job]:
        with self._cv:
            return list(self._jobs)

    def _retire_dead_jobs(self) -> None:
        now = time.monotonic()
        for job in self._jobs_snapshot():
            if job.cancelled:
                job.error = Cancelled("client went away")
                self._finish(job)
            elif now > job.deadline:
                job.error = DeadlineExceeded(
                    f"deadline passed after {now - job.submitted:.2f} s "
                    f"({job.remaining_rows} of {job.n} rows unfinished)"
                )
                self._finish(job)
            elif job.error is not None:
                self._finish(job)

    def _fail_all(self, error: Exception) -> None:
        for job in self._jobs_snapshot():
            job.error = error
            self._finish(job)

    def _finish(self, job: Job) -> None:
        with self._cv:
            if job.finished is not None:
                return
            job.finished = time.monotonic()
            if job in self._jobs:
                self._jobs.remove(job)
                self._queued_rows -= job.n
            job.chunks = [] if job.error is not None else job.chunks
        self._safe_hook(job.on_done, job)

    def _report_load(self, active_rows: int | None) -> None:
        """active_rows: rows run in the last step; None keeps the last value reported."""
        if active_rows is not None:
            self._active_rows = active_rows
        self._safe_hook(
            self.hooks.on_load, self.model.dataset, self.key, self._queued_rows, self._active_rows
        )

    @staticmethod
    def _safe_hook(fn: Callable, *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # a failing hook never fails a request
            log.exception("hook %s failed", getattr(fn, "__name__", fn))


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
