"""dgs reproduce --server: Table 1's cells as sweeps give the offline reproduction's numbers."""

from __future__ import annotations

import csv

from experiments.paper import GRID
from service.cli import main
from service.core.evaluation import evaluate
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore


def test_table1_as_sweeps_matches_the_offline_cells(server, api_store, tmp_path):
    out = tmp_path / "results"
    args = ["reproduce", "--server", str(server.base_url), "--out", str(out)]
    args += ["--datasets", "moons", "--n", "300", "--sweep-n", "100", "--seed", "4"]
    assert main(args) == 0
    rows = list(csv.DictReader((out / "sweeps.csv").open()))
    table1 = [r for r in rows if "table1" in r["sweep"]]
    assert len(table1) == len(GRID) and all(r["state"] == "done" for r in rows)
    assert len(rows) == len(GRID) + 2 * 7
    # the same cell offline, in this process, on the same weights: the same KL
    model = CheckpointStore(api_store).load_ready("moons-density")
    row = next(r for r in table1 if r["variant"] == "smoothed")
    offline = evaluate(model, SampleSpec(variant="smoothed", scale=None, n=300, seed=4))
    assert float(row["kl_bits"]) == offline.kl_bits
