"""Client.sweep and `dgs sweep` against the real server."""

from __future__ import annotations

import csv
import io

import pytest

from service.cli import main
from service.client import Client, ServiceError

GRID = {"dataset": "moons", "variant": "baseline", "n": 200, "steps": [5, 10]}


def test_client_sweep_returns_the_table(server):
    with Client(str(server.base_url)) as c:
        result = c.sweep(GRID, seeds=2, metrics=["kl_bits", "evaluations"], progress=True)
        assert result.status["state"] == "done" and len(result.rows) == 4
        assert [s["steps"] for s in result.summary] == [5, 10]
        assert [s["evaluations"] for s in result.summary] == [5, 10]
        frame = result.frame
        assert frame is None or len(frame) == 4  # a DataFrame where pandas is installed
        with pytest.raises(ServiceError) as e:
            c.sweep({"dataset": "moons", "variant": ["baseline", "nope"]})
        assert e.value.status == 422 and "variant" in str(e.value)


def test_dgs_sweep_runs_a_yaml_grid(server, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: from a file\n"
        "grid:\n  dataset: moons\n  n: 200\n  steps: 5\n  variant: [baseline, smoothed]\n"
        "metrics: [kl_bits, recall]\n"
    )
    out = tmp_path / "cells.csv"
    code = main(["sweep", str(grid), "--url", str(server.base_url), "--out", str(out), "--quiet"])
    assert code == 0
    summary = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["variant"] for r in summary] == ["baseline", "smoothed"]
    assert all(float(r["kl_bits"]) == float(r["kl_bits"]) for r in summary)  # numbers, not NaN
    cells = list(csv.DictReader(out.open()))
    assert len(cells) == 2 and cells[0]["state"] == "done"
    bad = tmp_path / "bad.json"
    bad.write_text('{"grid": {"dataset": "moons", "colour": 1}}')
    assert main(["sweep", str(bad), "--url", str(server.base_url), "--quiet"]) == 2
    assert "colour" in capsys.readouterr().err
