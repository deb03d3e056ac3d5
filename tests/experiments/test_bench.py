"""dgs bench end to end on its cheapest section: measures, writes JSON and markdown (no speed
is asserted: the figures are ratios for the reports, never test thresholds)."""

import json
from pathlib import Path

import pytest
import torch

from experiments.bench import bench


def test_bench_writes_its_report(tmp_path, monkeypatch):
    from experiments import bench as bench_module

    # 40 training steps a run, not --quick's 200: three real runs of the worker either way, and
    # no figure here depends on their length (no speed is asserted)
    real = bench_module.training_speed
    monkeypatch.setattr(bench_module, "training_speed", lambda peak, steps: real(peak, steps=40))
    report = bench(out=tmp_path, sections=("training",), quick=True, device="cpu")
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["device"] == "cpu" and saved["matmul_flops"]["peak"] > 0
    t = saved["training"]
    assert t == report["training"] and t["seconds_per_1000_steps"] > 0
    assert 0 < t["roofline_fraction"] < 1.5  # measured against a measured peak; not a target
    assert t["energy_over_plain"] > 0 and "double backward" in (tmp_path / "bench.md").read_text()
    md = (tmp_path / "bench.md").read_text()
    assert "## Training" in md and "Sampler throughput" not in md


def test_the_guidance_section_times_every_method_against_its_models_baseline(tmp_path):
    """Through dgs bench's own entry (it once handed `quick` to the section as n)."""
    from experiments import guidance_bench

    report = bench(out=tmp_path, sections=("guidance",), quick=True, device="cpu")
    rows = report["guidance"]
    assert len(rows) == guidance_bench.methods_count()
    assert {r["n"] for r in rows} == {guidance_bench.QUICK["n"]}
    for r in rows:
        assert r["seconds_per_sample"] > 0 and r["over_baseline"] > 0
        # each model's reference row; the conditional model's class-0 baseline is timed too
        reference = r["variant"] == "baseline" and not r["options"]
        assert (r["over_baseline"] == 1.0) == reference
    md = (tmp_path / "bench.md").read_text()
    assert "moons-energy-improved | density |  |  | heun" in md and "`score` gradient" in md
    assert "| moons-conditional-improved | cfg |  | class 0, interval [0.3, 3] | ddpm |" in md
    assert "Target cfg (2 passes a step)" in md and "Target autoguidance" in md


def test_the_stream_section_alternates_sample_and_stream_through_the_client(server):
    from tqdm import tqdm

    from experiments import stream_bench

    # the session's server of the tiny store (tests/servers.py)
    s = stream_bench.stream_cost(str(server.base_url), 1, tqdm(disable=True))
    assert [r["n"] for r in s["rows"]] == list(stream_bench.SIZES)
    for r in s["rows"]:
        # queued + a progress event per evaluation (the tiny models' T) + previews + result
        assert r["events"] > 50 and r["sample_s"] > 0 and r["stream_over_sample"] > 0
    md = "\n".join(stream_bench.render(s))
    assert "stream / sample <=" in md and f"| {stream_bench.SIZES[-1]:,} |" in md


def test_the_guidance_report_renders_a_section_without_score_rows():
    """A run of the conditional block alone has no `score` row: render took max() of none."""
    from experiments import guidance_bench

    row = {"model": "m", "gradient": "", "sampler": "ddpm", "n": 10, "seconds_per_sample": 1e-4}
    rows = [{**row, "variant": "baseline", "options": "", "over_baseline": 1.0}]
    rows.append({**row, "variant": "cfg", "options": "class 0", "over_baseline": 1.9})
    text = "\n".join(guidance_bench.render(rows))
    assert "`score` gradient" not in text and "Target cfg (2 passes a step)" in text


def test_the_refactor_section_times_a_commit_beside_the_working_tree(tmp_path):
    """The old tree's code and this one's on the same requests, one process each."""
    from experiments import refactor_bench

    cases = [("moons-plain", "baseline", {}), ("moons-density", "fixed", {})]
    # HEAD, not the default commit: a shallow clone may lack it; the mechanism is the same
    report = refactor_bench.refactor_cost(
        Path(__file__).resolve().parents[2] / "model_store",
        before="HEAD",
        n=32,
        rounds=1,
        steps=4,
        cases=cases,
    )
    assert [r["variant"] for r in report["rows"]] == ["baseline", "fixed"]
    for r in report["rows"]:
        assert (
            r["before_s"] > 0
            and r["after_s"] > 0
            and r["ratio"] == pytest.approx(r["after_s"] / r["before_s"], rel=1e-2)
        )
    assert "after / before" in "\n".join(refactor_bench.render(report))


def test_the_exact_section_times_the_oracle_beside_the_mlp_and_the_metrics():
    from experiments import exact_bench
    from service.core.store import CheckpointStore
    from tests.conftest import SHIPPED_STORE

    report = exact_bench.exact_cost(
        CheckpointStore(SHIPPED_STORE), torch.device("cpu"), n=256, rounds=2, steps=4
    )
    assert [r["dataset"] for r in report["rows"]] == sorted(exact_bench.DATASETS)
    for r in report["rows"]:
        assert len(r["spread_oracle"]) == len(r["spread_learned"]) == 2
        assert r["ratio"] == r["oracle_s"] / r["learned_s"] > 0
        assert r["metrics_ratio"] == r["metrics_s"] / r["drawing_s"] > 0
    text = "\n".join(exact_bench.render(report))
    assert "oracle / MLP" in text and ("met" in text or "missed" in text)
