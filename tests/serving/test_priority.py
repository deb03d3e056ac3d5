"""Priority classes inside the step: the policy, and a real batcher run step by step."""

from __future__ import annotations

import time

import pytest

from service.core.plan import make_plan
from service.core.spec import SampleSpec
from service.core.step import make_chunks
from service.serving.admission import Cost
from service.serving.batcher import BatcherOptions, ModelBatcher, select_chunks
from service.serving.engine import Engine
from service.serving.job import Job
from service.serving.priority import ClassShare, classify, fill_rows, select_prioritized
from service.serving.steptime import modeled
from tests.serving.test_batcher_lifecycle import Recorder

CPU_COST = Cost(baseline=4e-6, guided=1e-5, step=3e-4)  # the 2-core VM's shape: rows cost
GPU_COST = Cost(baseline=1e-9, guided=3e-9, step=1e-3)  # launches cost, rows nearly free
# Charged at CPU_COST, a batch turn (16 interactive rows and 7 chunks of 256) costs 7.5 ms and
# an interactive step 0.36 ms: the 10% minimum share owes the batch class a turn about every
# 180 steps, 6 turns in 1,000 steps (the first at once)
STEPS = 1000
BATCH_TURNS = 6


def job(model, n, priority, deadline=1e18, submitted=None):
    plan = make_plan(model, SampleSpec(variant="baseline"))
    j = Job(plan, n, seed=0, deadline=deadline, on_done=lambda _: None, priority=priority)
    if submitted is not None:
        j.submitted = submitted
    j.chunks = make_chunks(plan, n, 0, model.device)
    return j


def rows_of(chosen, j):
    return sum(c.rows for c in chosen if c in j.chunks)


def test_classify_by_size_unless_asked():
    assert classify(16, None, 1024) == "interactive"
    assert classify(1024, None, 1024) == "interactive"
    assert classify(1025, None, 1024) == "batch"
    assert classify(16, "batch", 1024) == "batch"


def test_fill_rows_admits_batch_rows_only_where_they_are_nearly_free():
    # CPU: 16 interactive rows cost 0.36 ms; 25% more is ~20 rows, less than one chunk
    assert fill_rows(16, CPU_COST.step, CPU_COST.baseline) < 256
    # GPU: a step of 4,096 rows costs what one of 16 does
    assert fill_rows(16, GPU_COST.step, GPU_COST.baseline) > 4096


def test_interactive_rows_go_first_and_batch_rows_only_fill(plain_model):
    big = job(plain_model, 100_000, "batch")
    small = job(plain_model, 16, "interactive")
    chosen = select_prioritized([big, small], 4096, 4096, lambda used: 0, "deadline", select_chunks)
    assert rows_of(chosen, small) == 16 and rows_of(chosen, big) == 0
    # with room to fill, batch rows come after the interactive ones, round-robin among batch
    other = job(plain_model, 100_000, "batch")
    chosen = select_prioritized(
        [big, small, other], 4096, 4096, lambda used: 1024, "deadline", select_chunks
    )
    assert (rows_of(chosen, small), rows_of(chosen, big), rows_of(chosen, other)) == (16, 512, 512)
    # today's fair share, for contrast: the same small job beside the same big one
    assert rows_of(select_chunks([big, small], 4096, 4096), big) == 4096 - 256


def test_interactive_order_when_its_rows_exceed_the_step(plain_model):
    now = time.monotonic()
    late = job(plain_model, 1024, "interactive", deadline=now + 60, submitted=now)
    urgent = job(plain_model, 1024, "interactive", deadline=now + 5, submitted=now + 1)
    small = job(plain_model, 256, "interactive", deadline=now + 60, submitted=now + 2)
    jobs = [late, urgent, small]
    by_deadline = select_prioritized(jobs, 1024, 1024, lambda used: 0, "deadline", select_chunks)
    assert rows_of(by_deadline, urgent) == 1024
    by_work = select_prioritized(jobs, 1024, 1024, lambda used: 0, "remaining", select_chunks)
    assert (
        rows_of(by_work, small) == 256 and rows_of(by_work, urgent) + rows_of(by_work, late) == 768
    )


def test_share_gives_the_batch_class_its_turn():
    share = ClassShare(min_share=0.2)
    share.joined("batch")
    assert share.batch_turn()  # a batch request's first step comes at once
    share.record(0.01, batch_rows=4096, rows=4096)
    assert not share.batch_turn()
    turns = 1
    for _ in range(5000):  # interactive steps of 1 ms; batch gets a 10 ms step when owed
        if share.batch_turn():
            turns += 1
            share.record(0.01, 4096, 4096)
        else:
            share.record(0.001, 0, 16)
    batch_time, total = turns * 0.01, turns * 0.01 + (5001 - turns) * 0.001
    assert 0.19 <= batch_time / total < 0.25
    share.left("batch")
    share.record(0.001, 0, 16)
    assert share.batch_turn()  # nothing owed once no batch request waits
    with pytest.raises(ValueError, match="min_share"):
        ClassShare(min_share=1.0)


@pytest.mark.parametrize("scheduling", ["priority", "fair"])
def test_a_real_batcher_keeps_interactive_steps_small_and_batch_alive(plain_model, scheduling):
    """A stream of n = 16 interactive requests beside one of 20,000 rows, stepped by hand.

    Every step runs for real, but is charged at CPU_COST's time instead of its measured one
    (steptime.modeled): the shares below are then the policy's alone, the same on any machine
    under any load (with measured times they moved with the VM's other work)."""
    share = ClassShare(min_share=0.1)
    options = BatcherOptions(max_rows_per_step=2048, scheduling=scheduling)
    charged: list[float] = []
    run = modeled(CPU_COST)

    def step(model, chunks):
        charged.append(run(model, chunks))
        return charged[-1]

    batcher = ModelBatcher(
        plain_model, Recorder(), Engine(), options, cost=CPU_COST, share=share, run_step=step
    )
    plan = make_plan(plain_model, SampleSpec(variant="baseline"))

    def submit(n, priority):
        j = Job(plan, n, 0, time.monotonic() + 600, lambda _: None, priority=priority)
        batcher.submit(j)
        return j

    big = submit(20_000, "batch")
    small = submit(16, "interactive")
    step_rows, batch_seconds = [], 0.0
    # fair: every step is a full one from the start; a few show it
    steps = STEPS if scheduling == "priority" else 60
    for _ in range(steps):
        if small.finished is not None:
            small = submit(16, "interactive")
        before = big.remaining_rows * (1 - big.progress)
        batcher.run_once()
        if big.remaining_rows * (1 - big.progress) < before:
            batch_seconds += charged[-1]
        step_rows.append(batcher._active_rows)
    assert len(charged) == steps  # every call ran one step
    small_steps = sum(1 for r in step_rows if r <= 16)
    if scheduling == "fair":
        assert small_steps == 0  # every step is a full one: the small request waits on them
        return
    # the batch class's turns: full steps whenever its share of step time fell below 10%
    turns = len(step_rows) - small_steps
    assert turns == BATCH_TURNS, turns
    assert small_steps >= 0.95 * len(step_rows)
    assert big.progress > 0  # never starved: the batch class got its turns
    # at least its minimum share, and not much more (the first turn comes before any is owed)
    assert 0.1 <= batch_seconds / sum(charged) <= 0.12, batch_seconds / sum(charged)
