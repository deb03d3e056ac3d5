"""dgs reproduce on tiny real models: every output file, and the same numbers as /evaluate."""

from __future__ import annotations

import csv

import matplotlib.image
import pytest

from experiments.reproduce import GRID, SWEEP_SCALES, SWEEP_VARIANTS
from service.cli import main
from service.core.evaluation import evaluate
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore


@pytest.fixture(scope="module")
def results(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    code = main(
        [
            "reproduce",
            "--out",
            str(out),
            "--n",
            "400",
            "--sweep-n",
            "100",
            "--model-store",
            str(tiny_store),
            "--datasets",
            "moons",
        ]
    )
    assert code == 0
    return out


def test_table_has_every_cell_with_the_papers_values(results):
    with open(results / "table1.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["objective"], r["variant"]) for r in rows] == list(GRID)
    plain = rows[0]
    assert plain["paper_kl"] == "0.10" and plain["paper_time_s"] == "0.12"
    assert rows[1]["paper_kl"] == "-"  # the row the paper lacks
    for r in rows:
        assert float(r["batch_seconds"]) > 0 and float(r["kl_bits"]) > -1
        assert 0 <= float(r["nonfinite_fraction"]) <= 1
    md = (results / "table1.md").read_text()
    assert md.count("\n") == 2 + len(GRID) and "| moons | density | smoothed | 0.01 |" in md


def test_cells_are_what_evaluate_returns(results, tiny_store):
    """The reproduction and POST /evaluate share core.evaluation: same seed, same KL."""
    with open(results / "table1.csv") as f:
        fixed = next(r for r in csv.DictReader(f) if r["variant"] == "fixed")
    model = CheckpointStore(tiny_store).load_ready("moons-density")
    ev = evaluate(model, SampleSpec(variant="fixed", n=400))
    assert float(fixed["kl_bits"]) == pytest.approx(ev.kl_bits)
    # and the exact metrics beside it: the samples' exact log p against the data's own
    gap = ev.exact.mean_log_p_data - ev.exact.data_mean_log_p
    assert float(fixed["exact_log_p_gap"]) == pytest.approx(gap)
    assert float(fixed["exact_reverse_kl_floor_bits"]) > 0


def test_sweep_and_figures(results):
    with open(results / "sweep.csv") as f:
        sweep = list(csv.DictReader(f))
    assert len(sweep) == len(SWEEP_VARIANTS) * len(SWEEP_SCALES) + 2
    assert {float(r["scale"]) for r in sweep} == {*SWEEP_SCALES, 0.0}
    assert {r["variant"] for r in sweep if float(r["scale"]) == 0} == {
        "baseline-plain",
        "baseline-density",
    }
    for name in ("samples.png", "kl_bars.png", "loss_curves.png", "scale_sweep.png"):
        image = matplotlib.image.imread(results / name)
        assert image.shape[0] > 200 and image.shape[1] > 300, name
    assert "threads" in (results / "machine.txt").read_text()
