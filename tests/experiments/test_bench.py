"""dgs bench end to end on its cheapest section: measures, writes JSON and markdown (no speed
is asserted: the figures are ratios for the reports, never test thresholds)."""

import json

from service.experiments.bench import bench


def test_bench_writes_its_report(tmp_path):
    report = bench(out=tmp_path, sections=("training",), quick=True, device="cpu")
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["device"] == "cpu" and saved["matmul_flops"]["peak"] > 0
    t = saved["training"]
    assert t == report["training"] and t["seconds_per_1000_steps"] > 0
    assert 0 < t["roofline_fraction"] < 1.5  # measured against a measured peak; not a target
    md = (tmp_path / "bench.md").read_text()
    assert "## Training" in md and "Sampler throughput" not in md
