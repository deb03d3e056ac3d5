"""Step-level (continuous) batching: one batcher per model, no HTTP in sight.

Every denoising step the batcher picks rows from all unfinished requests, each row at its
own timestep, and runs them in one batch (`core.step.advance`). New requests join at the
next step; finished rows leave at once. Rows move in chunks (<= CHUNK_ROWS rows of one
request) because a chunk carries its own random stream and guidance state, which is why a
request's samples do not depend on what it was batched with, or on being paused.

Fair share (`select_chunks`): rows are handed out round-robin, one chunk per request per
round in arrival order, until the step's row budget is spent; chunks already under way go
first. With m requests waiting, each gets about budget/m rows a step (never more than the
per-request cap), so a request of n = 100,000 cannot starve one of n = 16.

Priorities (`scheduling="priority"`, the default): interactive requests' rows go first, and
batch requests keep a guaranteed minimum share of step time; see service/serving/priority.py.
`scheduling="fair"` is the fair share above for every request, whatever its class.

`mode="request"` is the classic static batcher kept for comparison: after a short window,
whole requests start together and run to the end before the next batch is formed.
`mode="off"` runs one request at a time, for the benchmark's "batching off".

Admission is whole-server (`admission.Admission`): a request is taken only if it and the work
already taken can all finish inside their deadlines; this batcher reports each step's work to
it. A retired batcher (the model was reloaded or removed) takes no new requests, finishes the
ones in hand, and leaves the engine by itself once it has none.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from service.core.model import ReadyModel
from service.core.offline import collect, collect_log_p, count_nonfinite
from service.core.step import RowChunk, make_chunks
from service.serving.admission import DEFAULT_COST, Admission, Cost
from service.serving.job import (
    BatcherStopped,
    Cancelled,
    DeadlineExceeded,
    Hooks,
    Job,
    QueueFull,
)
from service.serving.priority import ClassShare, fill_rows, select_prioritized
from service.serving.steptime import StepRunner, measured, predicted_seconds

log = logging.getLogger(__name__)


def select_chunks(jobs: list[Job], budget: int, per_job_cap: int) -> list[RowChunk]:
    """Round-robin fair share of one step's rows; see the module docstring.

    A job's chunks start and finish in index order (each round takes a job's first unfinished
    chunk), so its under-way chunks come first without sorting, and the cost of a step's
    selection grows with the jobs it reaches, not with the queue behind a full budget.
    """
    chosen: list[RowChunk] = []
    used = 0

    def take(entry: list) -> bool:
        nonlocal used
        chunks, i, taken = entry
        while i < len(chunks) and chunks[i].done:
            i += 1
        entry[1] = i
        if i == len(chunks):
            return False
        rows = chunks[i].rows
        if used + rows > budget or taken + rows > per_job_cap:
            return False
        chosen.append(chunks[i])
        entry[1], entry[2] = i + 1, taken + rows
        used += rows
        return True

    queues = []
    for job in jobs:  # the first round, which also collects the jobs with rows left
        if used >= budget:
            break
        entry = [job.chunks, job.first_unfinished(), 0]
        if entry[1] < len(job.chunks):
            queues.append(entry)
            take(entry)
    progress = True
    while progress and used < budget:
        progress = False
        for entry in queues:
            progress = take(entry) or progress
    return chosen


class EngineLink(Protocol):
    """What a batcher needs of the engine that runs it (service.serving.engine.Engine)."""

    def wake(self) -> None: ...
    def detach(self, stepper: ModelBatcher) -> None: ...


@dataclass(frozen=True)
class BatcherOptions:
    mode: str = "step"  # "step", "request" or "off"; see the module docstring
    max_rows_per_step: int = 4096
    max_rows_per_request_step: int | None = None
    max_queued_rows: int = 400_000  # rows accepted but not finished
    batch_window_s: float = 0.005  # request mode's window after the oldest arrival
    scheduling: str = "priority"  # step mode: "priority" or "fair"; see the module docstring
    order: str = "deadline"  # priority: the interactive class's order (priority.ORDERS)


class ModelBatcher:
    """One model's queue and batching policy. Passive: the Engine's thread calls `run_once`
    once the owner has attached it (`engine.attach`).

    `submit`, `cancel`, `retire` and `close` are thread-safe.
    """

    _keys = itertools.count()

    def __init__(
        self,
        model: ReadyModel,
        hooks: Hooks,
        engine: EngineLink,
        options: BatcherOptions = BatcherOptions(),
        admission: Admission | None = None,
        cost: Cost = DEFAULT_COST,
        share: ClassShare | None = None,
        run_step: StepRunner = measured,
    ):
        if options.mode not in ("step", "request", "off"):
            raise ValueError(
                f"batching mode must be 'step', 'request' or 'off', got {options.mode!r}"
            )
        if options.scheduling not in ("priority", "fair"):
            raise ValueError(f"scheduling must be 'priority' or 'fair', got {options.scheduling!r}")
        self.model = model
        self.hooks = hooks
        self.engine = engine
        self.mode = options.mode
        self.budget = options.max_rows_per_step
        self.cap = options.max_rows_per_request_step or options.max_rows_per_step
        self.max_queued_rows = options.max_queued_rows
        self.batch_window_s = options.batch_window_s
        self.admission = admission or Admission()
        self.cost = cost
        self.scheduling = options.scheduling
        self.order = options.order
        self.share = share or ClassShare()  # server-wide when the registry passes one
        self.run_step = run_step  # runs a step and says how long it took (steptime.py)
        self.key = next(self._keys)
        self._lock = threading.Lock()
        self._jobs: list[Job] = []  # arrival order
        self._owners: dict[int, Job] = {}  # id(chunk) -> its job, for the jobs in _jobs
        self._batch: list[Job] = []  # request and off modes: the batch being run
        self._queued_rows = 0
        self._stopping = False
        self._drained = threading.Event()
        self._left_engine = False
        self._row_steps_per_s = 0.0  # smoothed throughput, for Retry-After
        self._active_rows = 0

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def retry_after(self) -> int:
        """Seconds until the queue should have room: queued row-steps over the measured rate."""
        rate = self._row_steps_per_s or 1e5
        steps = self.model.schedule.num_steps
        return int(min(60, max(1, math.ceil(self._queued_rows * steps / rate / 2))))

    def submit(self, job: Job) -> None:
        """Queue `job`, or raise BatcherStopped, QueueFull, or admission's Overloaded/TooLong."""
        self._check_room(job)  # before the chunks' generators are made for nothing
        work = self.cost.request(
            job.n, job.plan.evaluations, job.plan.needs_gradient, min(self.cap, self.budget)
        )
        job.ticket = self.admission.admit(self.key, work, job.deadline - time.monotonic())
        try:
            # made outside the lock, which the engine thread takes every step
            job.chunks = make_chunks(job.plan, job.n, job.seed, self.model.device)
            with self._lock:
                self._check_room(job)
                self._jobs.append(job)
                self._owners.update((id(c), job) for c in job.chunks)
                self._queued_rows += job.n
                self.share.joined(job.priority)
        except BaseException:
            self.admission.release(job.ticket)
            raise
        self._report_load(active_rows=None)
        self.engine.wake()

    def _check_room(self, job: Job) -> None:
        if self._stopping:
            raise BatcherStopped(f"model {self.model.name} is being unloaded")
        if self._queued_rows + job.n > self.max_queued_rows:
            raise QueueFull(self.retry_after())

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        self.engine.wake()

    def retire(self) -> None:
        """Take no new jobs; finish the ones in hand (each ends by its deadline at the latest),
        then leave the engine. Returns at once: a reload never waits on a long request."""
        with self._lock:
            self._stopping = True
        self.engine.wake()

    def wait_drained(self, timeout: float | None = None) -> bool:
        return self._drained.wait(timeout)

    @property
    def draining(self) -> bool:
        return self._stopping and not self._drained.is_set()

    def close(self, error: Exception) -> None:
        """Shutdown: end every job in hand with `error` (each still gets its answer), leave."""
        with self._lock:
            self._stopping = True
        self.fail_all(error)
        self._leave()

    def _leave(self) -> None:
        with self._lock:
            if self._left_engine:
                return
            self._left_engine = True
        self._report_load(active_rows=0)
        self.engine.detach(self)
        self._drained.set()

    # -- called on the engine thread -----------------------------------------------------

    def run_once(self) -> float:
        """Retire dead jobs and run at most one step; -> seconds until it wants to run again."""
        self._retire_dead_jobs()
        with self._lock:
            # one critical section with submit's room check: no job can join after this
            idle = not self._jobs
            leave = idle and self._stopping
        if leave:
            self._leave()
            return math.inf
        if idle:
            if self._active_rows:
                self._report_load(active_rows=0)
            return math.inf
        if self.mode != "step" and not any(not j.finished for j in self._batch):
            wait = self._form_batch()
            if wait > 0:
                return wait
        chosen = self._choose()
        if chosen:
            self._step(chosen)
        return 0.0

    def _choose(self) -> list[RowChunk]:
        if self.mode == "step":
            with self._lock:
                jobs = list(self._jobs)
            if self.scheduling == "fair":
                return select_chunks(jobs, self.budget, self.cap)
            return select_prioritized(
                jobs, self.budget, self.cap, self._batch_room, self.order, select_chunks
            )
        return [c for j in self._batch for c in j.chunks if not c.done]

    def _batch_room(self, interactive_rows: int) -> int:
        """Rows a step may give batch requests beside `interactive_rows` (priority.py)."""
        if not self.share.interactive_waiting or self.share.batch_turn():
            return self.budget
        return fill_rows(interactive_rows, self.cost.step, self.cost.per_row(False))

    def _form_batch(self) -> float:
        """Request mode: once the window after the oldest arrival has passed, take whole jobs
        up to the row budget. Off: the oldest job alone, at once. -> seconds left to wait."""
        with self._lock:
            wait = self._jobs[0].submitted + self.batch_window_s - time.monotonic()
            if self.mode == "request" and wait > 0:
                return wait
            batch, rows = [], 0
            for job in self._jobs:
                if batch and (self.mode == "off" or rows + job.n > self.budget):
                    break
                batch.append(job)
                rows += job.n
            self._batch = batch
        return 0.0

    def _step(self, chosen: list[RowChunk]) -> None:
        now = time.monotonic()
        with self._lock:
            owners = [self._owners[id(c)] for c in chosen]
        touched = list({id(j): j for j in owners}.values())
        interactive = sum(
            c.rows for c, j in zip(chosen, owners, strict=True) if j.priority == "interactive"
        )
        admitted = sum(c.rows for c in chosen if not c.started)
        for job in touched:
            if job.started is None:
                job.started = now
        seconds = self.run_step(self.model, chosen)
        rows = sum(c.rows for c in chosen)
        self._charge(chosen, rows, seconds)
        self.share.record(seconds, rows - interactive, rows)
        rate = rows / max(seconds, 1e-6)
        self._row_steps_per_s = (
            rate if not self._row_steps_per_s else 0.8 * self._row_steps_per_s + 0.2 * rate
        )
        _safe_hook(self.hooks.on_step, self.model.dataset, rows, admitted, seconds, interactive)
        for job in touched:
            if job.first_unfinished() == len(job.chunks):
                samples = collect(job.chunks)
                job.samples, job.nonfinite = samples, count_nonfinite(samples)
                job.log_p = collect_log_p(job.chunks)
                self._finish(job)
            elif job.on_step is not None:
                _safe_hook(job.on_step, job)
        self._report_load(active_rows=rows)

    def _charge(self, chosen: list[RowChunk], rows: int, seconds: float) -> None:
        """Tell admission what this step's work was: per job its rows' share, and the time."""
        raw = predicted_seconds(self.cost, chosen)
        overhead = self.cost.step / max(rows, 1)
        spent: dict[int, list] = {}
        with self._lock:
            for c in chosen:
                job = self._owners.get(id(c))
                if job is None or job.ticket is None:
                    continue
                work = c.rows * (self.cost.per_row(c.plan.needs_gradient) + overhead)
                entry = spent.setdefault(id(job), [job.ticket, 0.0])
                entry[1] += work
        self.admission.charge(self.key, [(t, w) for t, w in spent.values()], raw, seconds)

    def _retire_dead_jobs(self) -> None:
        now = time.monotonic()
        with self._lock:
            jobs = list(self._jobs)
        dead = False
        for job in jobs:
            if job.cancelled:
                job.error = Cancelled("client went away")
                self._finish(job)
                dead = True
            elif now > job.deadline:
                job.error = DeadlineExceeded(
                    f"deadline passed after {now - job.submitted:.2f} s "
                    f"({job.remaining_rows} of {job.n} rows unfinished)"
                )
                self._finish(job)
                dead = True
        if dead:  # the queue gauge must not keep a dead job's rows until the next request
            self._report_load(active_rows=None)

    def fail_all(self, error: Exception) -> None:
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.error = error
            self._finish(job)
        self._report_load(active_rows=0)

    def _finish(self, job: Job) -> None:
        with self._lock:
            if job.finished is not None:
                return
            job.finished = time.monotonic()
            if job in self._jobs:
                self._jobs.remove(job)
                self._queued_rows -= job.n
                self.share.left(job.priority)
                for c in job.chunks:
                    self._owners.pop(id(c), None)
            if job.error is not None:
                job.chunks = []  # free the rows now
        self.admission.release(job.ticket)
        _safe_hook(job.on_done, job)

    def _report_load(self, active_rows: int | None) -> None:
        """active_rows: rows run in the last step; None keeps the last value reported."""
        if active_rows is not None:
            self._active_rows = active_rows
        _safe_hook(
            self.hooks.on_load, self.model.dataset, self.key, self._queued_rows, self._active_rows
        )


def _safe_hook(fn: Callable, *args: object) -> None:
    try:
        fn(*args)
    except Exception:  # a failing hook never fails a request
        log.exception("hook %s failed", getattr(fn, "__name__", fn))
