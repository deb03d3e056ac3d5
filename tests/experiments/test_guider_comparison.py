"""`dgs reproduce`'s comparison of the guiders on the tiny conditional store."""

import csv

import pytest

from experiments import guider_comparison as gc
from service.core.store import CheckpointStore


def test_every_method_sampler_and_weight_is_scored(conditional_store, tmp_path):
    store = CheckpointStore(conditional_store)
    rows = gc.compare(tmp_path, store, n=120, steps=6, weights=(1.0, 3.0))
    assert {(r["sampler"], r["method"], r["w"]) for r in rows} == {
        (s, m, w) for s in gc.SAMPLERS for m in gc.METHODS for w in (1.0, 3.0)
    }
    # w = 1 is the conditional model alone for the guiders that take w itself
    same = {
        r["class_kl_bits"]
        for r in rows
        if r["w"] == 1.0
        and r["sampler"] == "ddpm"
        and r["method"].startswith(("cfg", "apg"))
        and r["method"] not in ("cfg_zero_star", "cfg_plus_plus")
    }
    assert len(same) == 1
    for r in rows:
        assert 0.0 <= r["precision"] <= 1.0 and 0.0 <= r["recall"] <= 1.0
    with open(tmp_path / "guider_comparison.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert (tmp_path / "guider_comparison.png").stat().st_size > 1000


def test_cfg_plus_plus_is_matched_by_its_mean_effective_weight(conditional_model):
    """l = w / mean(1 - renoise): at one step renoise is 0, so l is w itself (capped at 1)."""
    assert gc.matched_l(conditional_model, 0.5, "ddim", 1) == pytest.approx(0.5)
    many = gc.matched_l(conditional_model, 3.0, "ddim", 50)
    assert 0 < many < 3.0 / 2  # many steps: a much smaller l gives the same mean weight
