"""The fair-share policy and the settings checks, without a server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.api.settings import Settings
from service.core.plan import make_plan
from service.core.spec import SampleSpec
from service.core.step import make_chunks
from service.serving.batcher import select_chunks
from service.serving.job import Job


def job(model, n):
    plan = make_plan(model, SampleSpec(variant="baseline"))
    j = Job(plan, n, seed=0, deadline=1e18, on_done=lambda _: None)
    j.chunks = make_chunks(plan, n, 0, model.device)
    return j


def rows_by_job(chosen, jobs):
    return [sum(c.rows for c in chosen if c in j.chunks) for j in jobs]


def test_a_lone_request_gets_the_whole_step(plain_model):
    big = job(plain_model, 100_000)
    assert rows_by_job(select_chunks([big], 4096, 4096), [big]) == [4096]


def test_a_small_request_gets_in_beside_a_big_one(plain_model):
    big, small = job(plain_model, 100_000), job(plain_model, 16)
    chosen = select_chunks([big, small], 4096, 4096)
    assert rows_by_job(chosen, [big, small]) == [3840, 16]  # big loses one chunk for a step


def test_round_robin_shares_the_step(plain_model):
    jobs = [job(plain_model, 10_000) for _ in range(4)]
    assert rows_by_job(select_chunks(jobs, 4096, 4096), jobs) == [1024] * 4


def test_per_request_cap(plain_model):
    big = job(plain_model, 100_000)
    assert rows_by_job(select_chunks([big], 4096, 1024), [big]) == [1024]


def test_a_requests_chunks_run_in_order_and_finished_ones_are_skipped(plain_model):
    big = job(plain_model, 2048)
    first = select_chunks([big], 512, 512)
    assert first == big.chunks[0:2]
    for c in first:
        c.x = c.draw()  # started
    big.chunks[0].position = -1  # finished
    assert select_chunks([big], 512, 512) == big.chunks[1:3]


def test_a_full_step_does_not_look_at_the_queue_behind_it(plain_model):
    """Selection cost grows with the rows a step can take, not with the waiting requests."""
    served = [job(plain_model, 16) for _ in range(4096 // 16)]
    waiting = [job(plain_model, 16) for _ in range(3)]
    for j in waiting:
        j.chunks = None  # any look at these would raise
    assert rows_by_job(select_chunks(served + waiting, 4096, 4096), served) == [16] * len(served)


def test_settings_explain_inconsistent_limits():
    with pytest.raises(ValidationError, match="MAX_ROWS_PER_REQUEST_STEP"):
        Settings(max_rows_per_step=1024, max_rows_per_request_step=2048)
    with pytest.raises(ValidationError, match="MAX_QUEUED_ROWS"):
        Settings(max_queued_rows=10, max_n=100)
    with pytest.raises(ValidationError, match="DEFAULT_DEADLINE_S"):
        Settings(default_deadline_s=700)
    assert Settings(admin_token="").admin_token is None


def test_defaults_prefer_the_improved_recipe_and_fall_back_to_the_paper(tiny_store):
    """The service's default plain model is the improved recipe's where one is loaded."""
    from dataclasses import replace

    from service.core.store import CheckpointStore
    from service.serving.registry import Registry, ServedModel

    store = CheckpointStore(tiny_store)
    paper = store.load_ready("moons-plain")
    density = store.load_ready("moons-density")
    improved = replace(
        paper, name="moons-plain-improved", manifest={**paper.manifest, "recipe": "improved"}
    )
    reg = Registry({m.name: ServedModel(m, None) for m in (paper, density)})
    assert reg.defaults("moons") == {"plain": "moons-plain", "density": "moons-density"}
    reg.models[improved.name] = ServedModel(improved, None)
    assert reg.defaults("moons")["plain"] == "moons-plain-improved"
    assert reg.resolve("moons", objective="plain", model=None).name == "moons-plain-improved"
    assert reg.resolve("moons", objective="plain", model="moons-plain").name == "moons-plain"
