"""A scheduler's life on a real engine thread: retired, closed, and jobs that die before a step.

Every job gets exactly one answer, and the queue gauge never keeps rows that nobody runs.
"""

from __future__ import annotations

import threading
import time

import pytest

from service.core.sampling import make_plan
from service.serving.admission import Cost
from service.serving.batcher import ModelScheduler
from service.serving.engine import Engine
from service.serving.job import DeadlineExceeded, Job, SchedulerStopped


class Recorder:
    """Hooks that keep what the scheduler reports (a real Hooks implementation, no mock)."""

    def __init__(self) -> None:
        self.load: list[tuple[int, int]] = []

    def on_step(self, dataset, rows, admitted, seconds) -> None:
        pass

    def on_load(self, dataset, key, queued_rows, active_rows) -> None:
        self.load.append((queued_rows, active_rows))


@pytest.fixture
def engine():
    e = Engine().start()
    yield e
    e.stop()


def submit(scheduler, model, n, variant="baseline", deadline_s=60.0):
    done = threading.Event()
    job = Job(make_plan(model, variant), n, 0, time.monotonic() + deadline_s, lambda _: done.set())
    scheduler.submit(job)
    return job, done


def test_a_retired_scheduler_finishes_its_jobs_then_leaves_the_engine(engine, plain_model):
    """Issue 10: a reload detached the old scheduler after 30 s with a request unfinished,
    and that request never got an answer."""
    hooks = Recorder()
    scheduler = ModelScheduler(plain_model, hooks, engine, max_rows_per_step=256)
    job, done = submit(scheduler, plain_model, 4096)
    while not job.started:
        time.sleep(0.005)
    started = time.monotonic()
    scheduler.retire()
    assert time.monotonic() - started < 0.5  # retiring never waits for the work
    with pytest.raises(SchedulerStopped):
        submit(scheduler, plain_model, 16)
    assert done.wait(60), "the in-flight job was never answered"
    assert job.error is None and job.samples.shape == (4096, 2)
    assert scheduler.wait_drained(5)
    assert scheduler not in engine._schedulers
    assert hooks.load[-1] == (0, 0)


def test_close_answers_every_held_job(engine, plain_model):
    scheduler = ModelScheduler(plain_model, Recorder(), engine, max_rows_per_step=256)
    job, done = submit(scheduler, plain_model, 50_000)
    scheduler.close(SchedulerStopped("shutting down"))
    assert done.wait(5)
    assert isinstance(job.error, SchedulerStopped)
    assert scheduler not in engine._schedulers


def test_a_job_dead_before_its_first_step_leaves_the_queue_gauge_at_once(engine, plain_model):
    """Issue 10: the gauge kept a dead job's rows until the next request for that model."""
    hooks = Recorder()
    free = Cost(baseline=1e-12, guided=1e-12, step=0.0)  # admission must let it in
    scheduler = ModelScheduler(plain_model, hooks, engine, max_rows_per_step=256, cost=free)
    busy = engine.call(lambda: time.sleep(0.3))  # the engine is busy: no step can start it
    job, done = submit(scheduler, plain_model, 2048, deadline_s=0.05)
    assert hooks.load[-1][0] == 2048
    busy.result(5)
    assert done.wait(10) and isinstance(job.error, DeadlineExceeded)
    assert job.started is None
    deadline = time.monotonic() + 5
    while hooks.load[-1][0] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hooks.load[-1] == (0, 0)
