"""`dgs reproduce`'s w sweep on the tiny conditional store: every method's points, the curves."""

import csv

from experiments import guidance_sweep as gs
from service.core.store import CheckpointStore


def test_the_sweep_writes_every_point_and_w_one_is_one_sample_for_every_method(
    conditional_store, tmp_path
):
    rows = gs.sweep(
        tmp_path, CheckpointStore(conditional_store), n=200, steps=5, weights=(0.0, 1.0, 3.0)
    )
    assert {(r["method"], r["w"]) for r in rows} == {
        (m, w) for m in gs.METHODS for w in (0.0, 1.0, 3.0)
    }
    # w = 1 is the conditional model alone whatever the reference: one sample, one score
    at_one = {r["method"]: r for r in rows if r["w"] == 1.0}
    assert len({r["support_fraction"] for r in at_one.values()}) == 1
    assert len({r["class_kl_bits"] for r in at_one.values()}) == 1
    assert len({r["mean_shift_away"] for r in rows if r["w"] != 1.0}) > 1
    with open(tmp_path / "guidance_sweep.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    for name in ("guidance_sweep.png", "guidance_samples_gaussians.png", "guidance_sweep.md"):
        assert (tmp_path / name).stat().st_size > 1000


def test_without_conditional_models_it_says_so(tiny_store, tmp_path):
    assert gs.sweep(tmp_path, CheckpointStore(tiny_store), n=50) == []
    assert "no conditional models" in (tmp_path / "guidance_sweep.md").read_text()
