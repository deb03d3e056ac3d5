"""The sweep section's pieces: its grid as the server takes it, the cell-by-cell comparison,
the serial /evaluate's time split, the offline batch (the same numbers as each cell sampled
and scored alone) and the report's wording. No speed is asserted."""

import math

import pytest

from experiments import sweep_bench
from experiments.sweep_bench import (
    FULL,
    QUICK,
    compare,
    offline_batch,
    render,
    serial_split,
    sweep_body,
)
from service.api.sweep_cells import checked_cells, normalised_grid
from service.api.sweep_schemas import SweepRequest
from service.core.evaluation import evaluate
from service.core.spec import SampleSpec


def _cells(body):
    request = SweepRequest.model_validate(body)
    return checked_cells(normalised_grid(request, 5000), request.seed_list())


@pytest.mark.parametrize(("size", "cells"), [(FULL, 48), (QUICK, 12)])
def test_the_grid_is_a_valid_sweep_of_its_cells(size, cells):
    body = sweep_body(size["datasets"], size["guiders"], size["scales"], size["n"])
    expanded = _cells(body)
    assert len(expanded) == sweep_bench.cell_count(body) == cells
    for _, req in expanded:
        assert req.n == size["n"] and req.steps == 100 and req.sampler == "ddpm"
        assert req.log_p_samples == 0 and req.seed == 0  # no mean_log_p asked: no ODE
        assert req.variant in sweep_bench.GUIDERS and -10 <= req.scale <= 10
    assert {req.dataset for _, req in expanded} == set(sweep_bench.DATASETS)


def test_compare_counts_equal_values_cell_by_cell():
    a = [{"kl_bits": 1.0, "precision": 0.5, "recall": None}]
    b = [{"kl_bits": 1.0, "precision": 0.25, "recall": None}]
    out = compare(a, b)
    assert out == {"values": 3, "equal": 2, "max_abs_diff": 0.25}
    nan = [{"kl_bits": math.nan, "precision": 1.0, "recall": 1.0}]
    assert compare(nan, nan)["equal"] == 3
    assert compare(a, [{"kl_bits": None, "precision": 0.5, "recall": None}])["equal"] == 2
    with pytest.raises(ValueError):
        compare(a, a + a)


def test_the_serial_split_adds_up_to_the_wall_time():
    calls = [
        {"wall_s": 2.0, "compute_s": 1.5, "total_s": 1.6},
        {"wall_s": 3.0, "compute_s": 2.0, "total_s": 2.2},
    ]
    split = serial_split(calls, scoring_s=0.9)
    parts = split["plan_and_queue_s"] + split["sampling_s"] + split["scoring_s"]
    assert math.isclose(parts + split["overhead_s"], split["wall_s"])
    assert math.isclose(split["sampling_s"], 3.5) and math.isclose(split["overhead_s"], 0.3)
    assert math.isclose(split["overhead_per_request_s"], 0.15)


def test_the_offline_batch_gives_each_cell_its_own_numbers(density_model):
    """All cells' chunks stepped together: each cell's metrics equal to it sampled and scored
    alone (the sweep's and /evaluate's numbers, which the section also checks)."""
    requests = [
        {"dataset": "moons", "variant": v, "scale": s, "n": 300, "steps": 10, "seed": seed}
        | {"sampler": "ddpm"}  # (steps below T and no sampler: the few-step default)
        for v, s, seed in (("fixed", 0.1, 0), ("smoothed", 0.01, 1), ("adaptive", 0.2, 0))
    ]
    batch = offline_batch(density_model, requests)
    assert batch["rows"] == 900 and batch["sampling_s"] > 0 and batch["scoring_s"] > 0
    for r, cell in zip(requests, batch["cells"], strict=True):
        spec = SampleSpec(r["variant"], r["scale"], r["n"], r["seed"], r["steps"], "ddpm")
        alone = evaluate(density_model, spec)
        assert (cell["kl_bits"], cell["precision"], cell["recall"]) == (
            alone.kl_bits,
            alone.precision,
            alone.recall,
        )


def _report(serial_s: float, offline_s: float) -> dict:
    split = serial_split([{"wall_s": serial_s, "compute_s": 8.0, "total_s": 8.5}], 1.0)
    per_model = [
        {
            "model": "moons-density",
            "cells": 2,
            "sampling_s": 7.0,
            "serial_compute_s": 8.0,
            "alone_sampling_s": 3.4,
            "alone_served_s": 4.1,
        }
    ]
    return {
        "grid": {"dataset": ["moons"], "variant": ["fixed"], "scale": [0.1, 0.3]},
        "cells": 2,
        "n": 100,
        "steps": 100,
        "metrics": sweep_bench.METRICS,
        "concurrency": 4,
        "deadline_s": 600.0,
        "warm_s": 3.0,
        "warm_first_call_s": {"moons": 2.5},
        "warm_other_calls_s": {"moons": 0.5},
        "sweep_s": 5.0,
        "sweep_server_elapsed_s": 4.9,
        "sweep_predicted_s": 6.0,
        "sweep_done": 2,
        "sweep_failed": 0,
        "sweep_state": "done",
        "serial_s": serial_s,
        "serial_split": split,
        "serial_compute_s_by_variant": {"fixed": 8.0},
        "serial_equal_sweep": {"values": 6, "equal": 6, "max_abs_diff": 0.0},
        "offline_s": offline_s,
        "offline_sampling_s": 7.0,
        "offline_per_model": per_model,
        "offline_equal_sweep": {"values": 6, "equal": 6, "max_abs_diff": 0.0},
        "batch_over_serial_sampling": 8.0 / 7.0,
        "reference_s": 4.0,
        "reference_runs": [{"model": "moons-density", "loop_s": 1.5, "score_s": 0.5, "cells": 2}],
        "serial_over_sweep": serial_s / 5.0,
        "offline_over_sweep": offline_s / 5.0,
        "reference_over_sweep": 4.0 / 5.0,
        "load": dict.fromkeys(
            ("before", "sweep_start", "serial_start", "offline_start", "reference_start", "after"),
            [1.0, 1.0, 1.0],
        ),
        "cpus": 2,
    }


def test_the_report_words_both_targets():
    met = "\n".join(render(_report(serial_s=16.0, offline_s=4.5)))
    assert "Target sweep >= 3x the same cells sent one /evaluate after another: 3.20x - met" in met
    assert "one offline batch of all its rows: 90% - met" in met
    assert "baseline-equivalent" in met and "held-out likelihood" in met.lower()
    assert "moons-density 3.50 s / 3.40 s / 4.10 s" in met
    missed = "\n".join(render(_report(serial_s=5.5, offline_s=3.0)))
    assert "1.10x - **missed**" in missed and "60% - **missed**" in missed
