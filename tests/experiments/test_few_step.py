"""The few-step grid (experiments/few_step.py) and dgs bench's few_step section
(experiments/few_step_bench.py) on real models: the grid's rows, bar and report, and the
reference loop against the service's own DDPM (the same algorithm, so the same distribution).
No speed is asserted: the figures are ratios for the reports."""

import numpy as np
import pytest
import torch

from experiments import few_step, few_step_bench
from service.core.offline import sample
from service.core.samplers import SAMPLERS
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore
from tests.conftest import SHIPPED_STORE


def test_steps_for_never_passes_the_nfe_and_meets_takes_the_larger_tolerance():
    assert few_step.steps_for("ddpm", 10) == 10
    assert few_step.steps_for("heun", 10) == 5  # 2 S - 1 = 9 <= 10 < 11
    for name, smp in SAMPLERS.items():
        for nfe in few_step.NFE_TARGETS:
            steps = few_step.steps_for(name, nfe)
            assert smp.evaluations(steps) <= nfe < smp.evaluations(steps + 1)
    assert few_step.meets(0.149, 0.1) and not few_step.meets(0.151, 0.1)  # 0.05 bits
    assert few_step.meets(1.099, 1.0) and not few_step.meets(1.101, 1.0)  # 10%
    assert few_step.meets(-0.051, -0.1) and not few_step.meets(-0.049, -0.1)


def test_grid_rows_report_and_merge_round_trip(tmp_path):
    model = CheckpointStore(SHIPPED_STORE).load_ready("moons-plain-improved")
    reference = few_step.cell(model, "ddpm", "uniform", 100, 1000, 0)
    rows = [{**reference, "spacing": "reference"}]
    for sampler, nfe in (("ddpm", 5), ("dpmpp_2m_sde", 10), ("heun", 10)):
        rows.append(few_step.cell(model, sampler, "uniform", nfe, 1000, 0))
    assert [r["nfe"] for r in rows[1:]] == [5, 10, 9] and rows[3]["steps"] == 5
    assert all(r["exact_kl_bits"] is not None and r["nonfinite"] == 0 for r in rows)

    best = few_step.best_within(rows, model.name, 100)
    ok = [r for r in rows[1:] if few_step.meets(r["kl_bits"], reference["kl_bits"])]
    assert (best is None) == (not ok)
    if ok:
        assert best == min(ok, key=lambda r: (r["nfe"], r["kl_bits"]))

    text = few_step.write(rows, tmp_path / "a")
    assert f"| {model.name} | {reference['kl_bits']:.3f} |" in text
    assert ("met" in text) or ("missed" in text)
    assert (tmp_path / "a" / "grid.png").stat().st_size > 10_000
    back = few_step.read_rows(tmp_path / "a" / "grid.csv")
    assert back == rows  # numbers come back as numbers
    assert few_step.write(back, tmp_path / "b") == text


def test_the_reference_loop_draws_what_the_services_ddpm_draws():
    """tiny-diffusion's loop and the service's T-step DDPM are one algorithm: on the same
    weights their samples agree in mean and covariance within sampling error, and in KL."""
    model = CheckpointStore(SHIPPED_STORE).load_ready("moons-plain-improved")
    n = 4000
    loop = few_step_bench.reference_loop(model, n, 0)
    ours = sample(model, SampleSpec(n=n, seed=0, sampler="ddpm")).samples
    assert loop.shape == ours.shape == (n, 2)
    spread = ours.std(0)
    assert np.all(np.abs(loop.mean(0) - ours.mean(0)) < 4 * spread * np.sqrt(2 / n))
    np.testing.assert_allclose(np.cov(loop.T), np.cov(ours.T), atol=0.08 * spread.max() ** 2)
    # a loop that forgets the ancestral noise is a different distribution, and this sees it
    scheduler = few_step_bench.ReferenceScheduler(model.schedule)
    assert scheduler.get_variance(0) == 0 and float(scheduler.get_variance(50)) > 0


def test_the_moonshot_times_the_chosen_configuration_against_the_loop():
    store = CheckpointStore(SHIPPED_STORE)
    report = few_step_bench.moonshot(
        store, torch.device("cpu"), n=500, rounds=1, datasets=("moons",)
    )
    (row,) = report["rows"]
    if not row.get("missed"):
        assert few_step.meets(row["kl_bits"], row["ddpm100_kl_bits"])
    assert row["tried"][-1]["nfe"] == row["nfe"] and row["nfe"] in few_step_bench.NFE_LADDER
    assert row["speedup"] == pytest.approx(row["reference_s"] / row["ours_s"])
    assert row["samples_per_s"] == pytest.approx(500 / row["ours_s"])
    text = "\n".join(few_step_bench.render_moonshot(report))
    assert f"| moons | {row['ddpm100_kl_bits']:.3f} |" in text and "Target >= 10x" in text


def test_the_samplers_and_the_mix_against_their_baselines(tiny_store, plain_model):
    roof = few_step_bench.sampler_roofline(plain_model, peak=1e10, n=200, steps=4)
    assert [r["sampler"] for r in roof["rows"]] == list(SAMPLERS)
    for r in roof["rows"]:
        assert r["sample_steps_per_s"] == pytest.approx(200 * r["evaluations"] / r["seconds"])
    mixed = few_step_bench.mixed_batching(
        tiny_store, plain_model, torch.device("cpu"), rows=16, rounds=1
    )
    assert mixed["requests"] == len(SAMPLERS) * len(few_step_bench.MIX_STEPS)
    assert mixed["fraction_of_offline"] == pytest.approx(
        mixed["served_sample_steps_per_s"] / mixed["offline_sample_steps_per_s"]
    )
    text = "\n".join(few_step_bench.render_samplers(roof) + few_step_bench.render_mixed(mixed))
    assert "of roofline" in text and "sample-steps/s against one offline batch" in text
