"""A model batcher's life on a real engine thread: retired, closed, and jobs that die before a step.

Every job gets exactly one answer, and the queue gauge never keeps rows that nobody runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from service.core.plan import make_plan
from service.core.spec import SampleSpec
from service.serving.admission import Cost
from service.serving.batcher import BatcherOptions, ModelBatcher
from service.serving.engine import Engine
from service.serving.job import BatcherStopped, DeadlineExceeded, Job


class Recorder:
    """Hooks that keep what the batcher reports (a real Hooks implementation, no mock)."""

    def __init__(self) -> None:
        self.load: list[tuple[int, int]] = []

    def on_step(self, dataset, rows, admitted, seconds, interactive_rows) -> None:
        pass

    def on_load(self, dataset, key, queued_rows, active_rows) -> None:
        self.load.append((queued_rows, active_rows))


SMALL = BatcherOptions(max_rows_per_step=256)


def attached(engine, batcher):
    engine.attach(batcher)
    return batcher


@pytest.fixture
def engine():
    e = Engine().start()
    yield e
    e.stop()


def submit(batcher, model, n, variant="baseline", deadline_s=60.0):
    done = threading.Event()
    job = Job(
        make_plan(model, SampleSpec(variant=variant)),
        n,
        0,
        time.monotonic() + deadline_s,
        lambda _: done.set(),
    )
    batcher.submit(job)
    return job, done


def test_a_retired_batcher_finishes_its_jobs_then_leaves_the_engine(engine, plain_model):
    """A bug: a reload detached the old batcher after 30 s with a request unfinished,
    and that request never got an answer."""
    hooks = Recorder()
    batcher = attached(engine, ModelBatcher(plain_model, hooks, engine, SMALL))
    job, done = submit(batcher, plain_model, 4096)
    while not job.started:
        time.sleep(0.005)
    started = time.monotonic()
    batcher.retire()
    assert time.monotonic() - started < 0.5  # retiring never waits for the work
    with pytest.raises(BatcherStopped):
        submit(batcher, plain_model, 16)
    assert done.wait(60), "the in-flight job was never answered"
    assert job.error is None and job.samples.shape == (4096, 2)
    assert batcher.wait_drained(5)
    assert batcher not in engine._steppers
    assert hooks.load[-1] == (0, 0)


def test_close_answers_every_held_job(engine, plain_model):
    batcher = attached(engine, ModelBatcher(plain_model, Recorder(), engine, SMALL))
    job, done = submit(batcher, plain_model, 50_000)
    batcher.close(BatcherStopped("shutting down"))
    assert done.wait(5)
    assert isinstance(job.error, BatcherStopped)
    assert batcher not in engine._steppers


def test_a_job_dead_before_its_first_step_leaves_the_queue_gauge_at_once(engine, plain_model):
    """A bug: the gauge kept a dead job's rows until the next request for that model."""
    hooks = Recorder()
    free = Cost(baseline=1e-12, guided=1e-12, step=0.0)  # admission must let it in
    batcher = attached(engine, ModelBatcher(plain_model, hooks, engine, SMALL, cost=free))
    busy = engine.call(lambda: time.sleep(0.3))  # the engine is busy: no step can start it
    job, done = submit(batcher, plain_model, 2048, deadline_s=0.05)
    assert hooks.load[-1][0] == 2048
    busy.result(5)
    assert done.wait(10) and isinstance(job.error, DeadlineExceeded)
    assert job.started is None
    deadline = time.monotonic() + 5
    while hooks.load[-1][0] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hooks.load[-1] == (0, 0)


def test_one_models_failing_step_fails_its_jobs_and_the_engine_serves_the_others(
    engine, plain_model
):
    """A step that raises (here a time table of the wrong shape) ends that model's jobs with
    the error; the engine thread goes on, and the other model's requests are answered."""
    broken = replace(plain_model, name="moons-broken", time_table=plain_model.time_table[:, :7])
    hooks = Recorder()
    good = attached(engine, ModelBatcher(plain_model, Recorder(), engine, SMALL))
    bad = attached(engine, ModelBatcher(broken, hooks, engine, SMALL))
    failed, failed_done = submit(bad, broken, 300)
    served, served_done = submit(good, plain_model, 300)
    assert failed_done.wait(30) and isinstance(failed.error, RuntimeError), failed.error
    assert served_done.wait(60) and served.error is None and served.samples.shape == (300, 2)
    assert hooks.load[-1] == (0, 0)  # the failed job's rows left the queue gauge
    # the engine still runs both: the good model serves again, the broken one fails again
    again, again_done = submit(good, plain_model, 16)
    failed_again, failed_again_done = submit(bad, broken, 16)
    assert again_done.wait(60) and again.error is None
    assert failed_again_done.wait(30) and isinstance(failed_again.error, RuntimeError)
    assert engine._thread.is_alive()
    assert bad.admission.work_ahead_s == 0  # the failed jobs' admitted work was released
