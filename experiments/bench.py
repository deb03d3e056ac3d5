"""`dgs bench`: speed as ratios measured side by side in one run (never absolute targets in tests).

Sections: the dense-matmul roofline; sampler throughput per variant and n against it, and
the guided/baseline overhead; each guidance method's cost per sample (guidance_bench.py); the
real server under concurrent load with batching on and off; step-level against request-level
batching under Poisson arrivals; interactive requests beside batch jobs, by priority
(priority_bench.py); the overload storm; a profile of where a step's time goes
(profile_bench.py); training speed; few-step sampling against the reference loop
(few_step_bench.py); a grid as one sweep against the same cells one /evaluate after another,
one offline batch and the reference loop (sweep_bench.py).
Writes bench.json and bench.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from experiments import (
    exact_bench,
    few_step_bench,
    guidance_bench,
    loglik_bench,
    priority_bench,
    profile_bench,
    refactor_bench,
    stream_bench,
    sweep_bench,
    sweep_latency_bench,
)
from experiments.bench_spec import SECTIONS
from experiments.loadgen import closed_loop, poisson
from experiments.machine import machine
from experiments.overload import idle_throughput, storm
from experiments.serving import running_server
from service.core.device import pick_device
from service.core.model import ReadyModel
from service.core.network import DenoiserConfig, flops_per_row
from service.core.offline import sample
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore

VARIANTS = ("baseline", "fixed", "adaptive", "smoothed", "minimal")
SIZES = (1, 64, 1000, 10_000)
STEPS = 100


def _time(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls (after one warm-up call)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops(device: torch.device, quick: bool = False) -> dict:
    """Dense float32 matmul FLOP/s: the best of square GEMMs and the network's own shape.
    `quick` leaves out the 4096 square (9 of its GEMMs are ~12 s on one CPU thread), so a quick
    run's peak, and the rooflines against it, read lower than a full run's."""
    shapes = {
        "square_2048": (2048, 2048, 2048),
        **({} if quick else {"square_4096": (4096, 4096, 4096)}),
        "network_1024x256x256": (1024, 256, 256),
    }
    out = {}
    for name, (m, k, n) in shapes.items():
        a = torch.randn(m, k, device=device)
        b = torch.randn(k, n, device=device)
        reps = max(3, int(2e10 // (2 * m * k * n)))
        seconds = _time(lambda a=a, b=b, reps=reps: [a @ b for _ in range(reps)], 3)
        out[name] = 2 * m * k * n * reps / seconds
    out["peak"] = max(out.values())
    return out


def sampler_throughput(model: ReadyModel, peak: float, bar: tqdm) -> dict:
    """sample-steps/s per variant and n; baseline against the roofline; guided overhead."""
    config: DenoiserConfig = model.network.config
    arch_flops = flops_per_row(config, cached_time=False)
    exec_flops = flops_per_row(config, cached_time=True)
    roofline = peak / arch_flops  # sample-steps/s if every FLOP ran at the peak
    rows = []
    for n in SIZES:
        # Variants interleaved, best of several rounds: drift on a shared machine hits all
        # variants alike instead of whichever happened to run during it.
        seconds = dict.fromkeys(VARIANTS, math.inf)
        for variant in VARIANTS:
            sample(model, SampleSpec(variant=variant, n=n, seed=0))  # warm-up
        for _ in range(2 if n >= 10_000 else 5):
            for variant in VARIANTS:
                start = time.perf_counter()
                sample(model, SampleSpec(variant=variant, n=n, seed=0))
                seconds[variant] = min(seconds[variant], time.perf_counter() - start)
        bar.update(len(VARIANTS))
        for variant in VARIANTS:
            rate = n * STEPS / seconds[variant]
            rows.append(
                {
                    "variant": variant,
                    "n": n,
                    "seconds": seconds[variant],
                    "sample_steps_per_s": rate,
                    "roofline_fraction": rate / roofline if variant == "baseline" else None,
                    "roofline_fraction_executed_flops": (
                        rate * exec_flops / peak if variant == "baseline" else None
                    ),
                    "guided_over_baseline": seconds[variant] / seconds["baseline"],
                }
            )
    return {
        "flops_per_sample_step": arch_flops,
        "executed_flops_per_sample_step": exec_flops,
        "roofline_sample_steps_per_s": roofline,
        "rows": rows,
    }


def offline_rate(model: ReadyModel, n: int) -> float:
    return n * STEPS / _time(lambda: sample(model, SampleSpec(variant="baseline", n=n, seed=0)), 2)


@contextlib.contextmanager
def warm_server(store: Path, mode: str, device: torch.device) -> Iterator[str]:
    """The real server with batching `mode` on `device`, its first requests already served."""
    with running_server(store, BATCHING=mode, MAX_ROWS_PER_STEP=4096, DEVICE=device.type) as base:
        asyncio.run(closed_loop(base, 4, 16, 2))  # warm the server and the connections
        yield base


def service_load(store: Path, model: ReadyModel, bar: tqdm, device: torch.device) -> list[dict]:
    """Closed-loop clients against the real server, batching on (step) and off, same run."""
    rows = []
    for mode in ("step", "off"):
        with warm_server(store, mode, device) as base:
            for clients in (1, 8, 64):
                for n in (16, 256):
                    per_client = max(4, 64 // clients)
                    result = asyncio.run(closed_loop(base, clients, n, per_client))
                    rows.append(
                        {
                            "batching": "on" if mode == "step" else "off",
                            "clients": clients,
                            "n": n,
                            **result.summary(STEPS),
                        }
                    )
                    bar.update(1)
    for clients in (1, 8, 64):
        for n in (16, 256):
            offline = offline_rate(model, clients * n)
            for row in rows:
                if row["clients"] == clients and row["n"] == n:
                    row["offline_sample_steps_per_s"] = offline
                    row["fraction_of_offline"] = row["sample_steps_per_s"] / offline
    return rows


def step_vs_request(
    store: Path, model: ReadyModel, bar: tqdm, duration: float, device: torch.device
) -> dict:
    """Poisson arrivals (3/4 of requests n = 16, 1/4 n = 256) at rising rates, per scheduler."""
    sizes = (16, 16, 16, 256)
    mean_rows = sum(sizes) / len(sizes)
    capacity = offline_rate(model, 1024) / STEPS / mean_rows  # requests/s, roughly
    loads = (0.2, 0.4, 0.6, 0.8, 1.0, 1.3)
    rows = []
    for mode in ("step", "request"):
        with warm_server(store, mode, device) as base:
            for load in loads:
                result = asyncio.run(poisson(base, load * capacity, duration, sizes))
                rows.append(
                    {
                        "scheduler": mode,
                        "load": load,
                        "rate_per_s": load * capacity,
                        **result.summary(STEPS),
                    }
                )
                bar.update(1)
    return {"capacity_requests_per_s": capacity, "rows": rows}


def overload(store: Path, bar: tqdm, device: torch.device, quick: bool) -> dict:
    """The storm against the shipped models: 300 clients x n = 10,000 across the four
    datasets' default plain models, deadline 30 s, against the idle throughput at that n."""
    n, deadline = 10_000, 30
    env = {"MAX_ROWS_PER_STEP": 4096, "DEVICE": device.type, "DEFAULT_DEADLINE_S": deadline}
    with running_server(store, **env) as base:
        asyncio.run(closed_loop(base, 4, 16, 2))
        idle = asyncio.run(idle_throughput(base, n, 2 if quick else 4, "moons"))
        bar.update(1)
        result = asyncio.run(
            storm(base, 300, n, 30.0 if quick else 90.0, ("moons", "dino", "circle", "line"))
        )
        bar.update(1)
    return {
        **result,
        "deadline_s": deadline,
        "idle_samples_per_s": idle,
        "goodput_fraction_of_idle": result["goodput_samples_per_s"] / idle,
    }


def training_speed(peak: float, steps: int = 1000) -> dict:
    """The worker's speed (it trains on the CPU) against the CPU's forward+backward roofline,
    and the energy objective's double backward against the plain objective, side by side."""
    from service.worker.recipes import train_config
    from service.worker.train import train

    def seconds(recipe: str, objective: str) -> float:
        config = replace(train_config(recipe, objective), steps=steps, kl_samples=200)
        with tempfile.TemporaryDirectory() as out:
            return train("moons", config, out=out, progress=False)["train_seconds"]

    seconds_per_1000 = seconds("paper", "plain") / steps * 1000
    improved_plain, energy = seconds("improved", "plain"), seconds("improved", "energy")
    # forward + backward with weight gradients: ~3x the forward's FLOPs, full first layer
    config = train_config("paper", "plain")
    flops = 3 * flops_per_row(DenoiserConfig(), cached_time=False) * config.batch_size
    roofline_s = 1000 * flops / peak
    return {
        "device": "cpu",
        "cpu_matmul_peak_flops": peak,
        "seconds_per_1000_steps": seconds_per_1000,
        "roofline_seconds_per_1000": roofline_s,
        "roofline_fraction": roofline_s / seconds_per_1000,
        "batch_size": config.batch_size,
        "energy_seconds_per_1000_steps": energy / steps * 1000,
        "energy_over_plain": energy / improved_plain,
    }


def bench(
    out: str | Path = ".bench",
    store: str | Path = "model_store",
    quick: bool = False,
    sections: tuple[str, ...] = SECTIONS,
    device: str = "auto",
) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # The offline figures and the server run on the same device (the server's DEVICE follows
    # it), so their ratios compare like with like.
    device = pick_device(device)
    model = CheckpointStore(store).load_ready("moons-density", device)
    total = (
        len(SIZES) * len(VARIANTS) * ("sampler" in sections)
        + guidance_bench.methods_count() * ("guidance" in sections)
        + 12 * ("service" in sections)
        + len(stream_bench.SIZES) * ("stream" in sections)
        + 12 * ("schedulers" in sections)
        + priority_bench.RUNS * ("priorities" in sections)
        + 2 * ("overload" in sections)
        + 2 * (1 if quick else 2) * ("refactor" in sections)
        + len(exact_bench.DATASETS) * ("exact" in sections)
        + len(few_step_bench.DATASETS) * ("few_step" in sections)
        + 4 * ("sweep" in sections)
        + ("sweep_latency" in sections)
        + 3 * ("loglik" in sections)
    )
    bar = tqdm(total=total, desc="bench", unit="run")
    report: dict = {"machine": machine(), "device": str(device), "started": time.ctime()}
    report["matmul_flops"] = matmul_flops(device, quick)
    peak = report["matmul_flops"]["peak"]
    if "sampler" in sections:
        report["sampler"] = sampler_throughput(model, peak, bar)
    if "guidance" in sections:
        size = guidance_bench.QUICK if quick else guidance_bench.FULL
        report["guidance"] = guidance_bench.guidance_cost(
            CheckpointStore(store), device, bar, **size
        )
    if "service" in sections:
        report["service"] = service_load(Path(store), model, bar, device)
    if "stream" in sections:
        with warm_server(Path(store), "step", device) as base:
            report["stream"] = stream_bench.stream_cost(base, 2 if quick else 7, bar)
    if "schedulers" in sections:
        report["schedulers"] = step_vs_request(
            Path(store), model, bar, 3.0 if quick else 6.0, device
        )
    if "priorities" in sections:
        capacity = offline_rate(model, 4096)
        report["priorities"] = priority_bench.priorities(
            Path(store), capacity, STEPS, device.type, 10.0 if quick else 40.0, bar
        )
    if "overload" in sections:
        report["overload"] = overload(Path(store), bar, device, quick)
    if "profile" in sections:
        report["profile"] = {"serving_step": profile_bench.serving_step_profile(model)}
        if device.type == "cpu":  # on CUDA the CPU self times are launches, not kernels
            report["profile"]["offline"] = profile_bench.offline_profile(model, peak)
    if "training" in sections:
        cpu = torch.device("cpu")
        cpu_peak = peak if device.type == "cpu" else matmul_flops(cpu, quick)["peak"]
        report["training"] = training_speed(cpu_peak, steps=200 if quick else 1000)
    if "refactor" in sections:
        size = {"n": 64, "rounds": 1, "steps": 8} if quick else {}
        report["refactor"] = refactor_bench.refactor_cost(Path(store), bar=bar, **size)
    if "exact" in sections:
        size = {"n": 2000, "rounds": 1, "steps": 10} if quick else {}
        report["exact"] = exact_bench.exact_cost(CheckpointStore(store), device, bar=bar, **size)
    if "few_step" in sections:
        report["few_step"] = few_step_bench.few_step_cost(
            CheckpointStore(store), Path(store), device, peak, quick, bar=bar
        )
    if "sweep" in sections:
        report["sweep"] = sweep_bench.sweep_cost(
            CheckpointStore(store), Path(store), device, quick, bar=bar
        )
    if "sweep_latency" in sections:
        report["sweep_latency"] = sweep_latency_bench.run(Path(store))
        bar.update(1)
    if "loglik" in sections:
        report["loglik"] = loglik_bench.loglik_cost(CheckpointStore(store), device, quick, bar)
    bar.close()
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    from experiments.bench_report import render

    (out / "bench.md").write_text(render(report))
    return report
