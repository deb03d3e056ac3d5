"""The grid's expansion and the table's statistics, against answers worked by hand."""

from __future__ import annotations

import math

import pytest

from service.sweeps.grid import count, expand, listed
from service.sweeps.stats import mean_interval, metric, summary


def test_expand_is_every_combination_last_field_fastest_seeds_innermost():
    grid = {"dataset": ["moons", "dino"], "variant": "baseline", "scale": [0.5, 1.0, 2.0]}
    cells = expand(grid, [7, 8])
    assert count(grid, [7, 8]) == len(cells) == 12
    assert listed(grid) == ["dataset", "scale"]
    first, second, third = cells[0], cells[1], cells[2]
    assert first.request == {"dataset": "moons", "variant": "baseline", "scale": 0.5, "seed": 7}
    assert second.request["seed"] == 8 and second.config == first.config == 0
    assert third.request["scale"] == 1.0 and third.config == 1
    assert cells[-1].request == {"dataset": "dino", "variant": "baseline", "scale": 2.0, "seed": 8}
    assert cells[-1].choice == {"dataset": 1, "scale": 2}  # the listed fields' indices only


def test_t_interval_of_one_two_three():
    # mean 2, sd 1: half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert low == pytest.approx(2 - 2.484138, abs=1e-6)
    assert high == pytest.approx(2 + 2.484138, abs=1e-6)
    mean, low, high = mean_interval([5.0])
    assert mean == 5.0 and math.isnan(low) and math.isnan(high)


def test_interval_covers_the_mean_at_its_level():
    # normal draws: the 95% interval of 5 holds the true mean in about 95% of repeats
    import numpy as np

    rng = np.random.default_rng(0)
    hits = sum(
        lo <= 0 <= hi
        for _, lo, hi in (mean_interval(list(rng.normal(size=5))) for _ in range(4000))
    )
    assert 0.94 < hits / 4000 < 0.96


def test_metric_reads_dotted_paths_and_refuses_non_numbers():
    result = {"kl_bits": 0.5, "exact": {"energy_distance": 0.01}, "nonfinite": True, "x": None}
    assert metric(result, "kl_bits") == 0.5
    assert metric(result, "exact.energy_distance") == 0.01
    assert metric(result, "nonfinite") is None  # a bool is not a metric
    assert metric(result, "x") is None and metric(result, "exact.missing") is None
    assert metric(None, "kl_bits") is None
    assert metric({"kl_bits": float("nan")}, "kl_bits") is None


def test_summary_groups_seeds_and_counts_failures():
    def row(config, seed, state, kl):
        request = {"dataset": "moons", "scale": [1.0, 2.0][config], "seed": seed}
        result = None if kl is None else {"kl_bits": kl}
        return {"config": config, "request": request, "state": state, "result": result}

    rows = [row(0, 0, "done", 1.0), row(0, 1, "done", 3.0), row(1, 0, "failed", None)]
    table = summary(rows, ["scale"], ["kl_bits"])
    assert table[0]["scale"] == 1.0 and table[0]["kl_bits"] == 2.0
    assert table[0]["seeds_done"] == 2 and table[0]["kl_bits_low"] < 2 < table[0]["kl_bits_high"]
    assert table[1]["seeds_failed"] == 1 and table[1]["kl_bits"] is None
