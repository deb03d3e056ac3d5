"""`dgs bench --sections sweep`: a grid as one sweep, against the same cells sent one /evaluate
after another, one offline batch of all its rows, and the reference loop run serially.

The grid: 4 datasets x 3 guided variants x 4 scales, n = 10,000, 100 DDPM steps, one seed,
metrics kl_bits, precision and recall (48 cells; --quick: one scale at n = 1,000, 12 cells).
Everything below runs in one run, on one server (the shipped model_store, the server's own
settings but the deadline: its /evaluate requests get the 600 s its sweep cells run with):

- sweep: POST /sweeps to state done, polled (the server's own elapsed_s is kept beside it);
- serial: each cell's full request as the sweep stored it (`rows[i]["request"]`: the same
  seed, log_p_samples 0) sent to /evaluate one after another on the same server; every
  cell's kl_bits, precision and recall checked equal to the sweep's. Each response's timing
  splits its wall time into planning and queueing, sampling, and the rest (scoring, the
  request's validation and HTTP), the scoring part measured offline on the same cells;
- offline: per model, all its cells' row chunks stepped together by the core's own loop body
  (`advance`, as `sample()` steps one request's chunks) until done, then each cell scored as
  the sweep scores it (k-NN KL, precision/recall and the exact metrics), no server; the same
  numbers as the sweep's, checked;
- reference: tiny-diffusion's loop (few_step_bench.reference_loop) on each cell's model and
  seed. It has no guidance, so it runs the baseline-equivalent of every cell: its numbers for
  the cells of one model and seed are the same computation whatever the guider or scale, so it
  is timed (and its samples scored) once per model and seed and counted once per cell.

Targets: sweep >= 3x faster than the serial /evaluate (serial_s / sweep_s), and
the sweep's throughput >= 80% of the offline batch's (offline_s / sweep_s).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from experiments.bench_spec import verdict
from experiments.serving import running_server

DATASETS = ("circle", "dino", "line", "moons")
# the paper's guided variants whose scale matters, all on each dataset's density model (its
# head's gradient); cfg and its kin need a class-conditional model, density/prior Heun
GUIDERS = ("fixed", "adaptive", "smoothed")
# within every guider's range (-10, 10), around their defaults (0.1, 0.2, 0.01); every cell's
# samples stay finite on the shipped models (checked with n = 1,000, seed 0)
SCALES = (0.01, 0.03, 0.1, 0.3)
STEPS = 100
SEED = 0
METRICS = ["kl_bits", "precision", "recall"]
FULL = {"n": 10_000, "datasets": DATASETS, "guiders": GUIDERS, "scales": SCALES}
QUICK = {"n": 1_000, "datasets": DATASETS, "guiders": GUIDERS, "scales": SCALES[:1]}
SERIAL_TARGET = 3.0  # sweep against the same cells one /evaluate after another
OFFLINE_TARGET = 0.8  # the sweep's throughput against one offline batch of all its rows
DEADLINE_S = 600.0  # the server's MAX_DEADLINE_S, which a sweep's cells run with
CONCURRENCY = 4  # SWEEP_CONCURRENCY: the server's default, named so the report can say it
POLL_S = 0.2
SWEEP_TIMEOUT_S = 3600.0


def sweep_body(
    datasets=DATASETS, guiders=GUIDERS, scales=SCALES, n: int = 10_000, steps: int = STEPS
) -> dict[str, Any]:
    """The POST /sweeps body: datasets x guiders x scales at one n, DDPM, one seed."""
    return {
        "grid": {
            "dataset": list(datasets),
            "variant": list(guiders),
            "scale": list(scales),
            "n": n,
            "steps": steps,
            "sampler": "ddpm",
        },
        "seeds": [SEED],
        "metrics": list(METRICS),
        "name": "dgs bench: sweep section",
    }


def cell_count(body: dict[str, Any]) -> int:
    lists = [v for v in body["grid"].values() if isinstance(v, list)]
    return int(np.prod([len(v) for v in lists])) * len(body["seeds"])


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]], metrics=METRICS) -> dict[str, Any]:
    """Cell by cell (same order), how many of `metrics` are equal in `a` and `b`, and the
    largest difference (NaN or None equal only to itself)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} cells against {len(b)}")
    equal, worst, compared = 0, 0.0, 0
    for x, y in zip(a, b, strict=True):
        for m in metrics:
            u, v = x.get(m), y.get(m)
            compared += 1
            if u is None or v is None or (isinstance(u, float) and np.isnan(u)):
                same = (u is None and v is None) or (
                    isinstance(u, float) and isinstance(v, float) and np.isnan(u) and np.isnan(v)
                )
            else:
                same = u == v
                worst = max(worst, abs(float(u) - float(v)))
            equal += bool(same)
    return {"values": compared, "equal": equal, "max_abs_diff": worst}


def serial_split(calls: list[dict[str, Any]], scoring_s: float) -> dict[str, float]:
    """Where the serial /evaluate's wall time went: planning and queueing, sampling (the
    batcher's compute), scoring (measured offline on the same cells), and the rest (the
    request's validation, HTTP, the response)."""
    wall = sum(c["wall_s"] for c in calls)
    compute = sum(c["compute_s"] for c in calls)
    served = sum(c["total_s"] for c in calls)  # arrival to the last step, planning included
    split = {
        "wall_s": wall,
        "plan_and_queue_s": served - compute,
        "sampling_s": compute,
        "scoring_s": scoring_s,
        "overhead_s": wall - served - scoring_s,
    }
    split["overhead_per_request_s"] = split["overhead_s"] / max(len(calls), 1)
    return split


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- against the server --------------------------------------------------------------------


def _warm(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """One small /evaluate per dataset and guider (plans, each model's held-out likelihood,
    which /evaluate computes on its first request per model and a sweep skips) and a one-cell
    sweep. -> seconds, and per dataset its first /evaluate's wall time against its others'
    mean (the difference: the held-out likelihood, paid once per model and server)."""
    start = time.perf_counter()
    grid = body["grid"]
    first, others = {}, {}
    for d in grid["dataset"]:
        walls = []
        for v in grid["variant"]:
            t0 = time.perf_counter()
            r = client.post(
                "/evaluate",
                json={
                    "dataset": d,
                    "variant": v,
                    "scale": grid["scale"][0],
                    "n": 256,
                    "steps": grid["steps"],
                    "sampler": "ddpm",
                    "seed": 1,
                    "log_p_samples": 0,
                },
            )
            r.raise_for_status()
            walls.append(time.perf_counter() - t0)
        first[d] = walls[0]
        others[d] = sum(walls[1:]) / len(walls[1:]) if len(walls) > 1 else float("nan")
    tiny = {
        **body,
        "grid": {
            **grid,
            "dataset": grid["dataset"][0],
            "variant": grid["variant"][0],
            "scale": grid["scale"][0],
            "n": 64,
        },
        "name": "warm-up",
    }
    _run_sweep(client, tiny)
    return {"s": time.perf_counter() - start, "first_call_s": first, "other_calls_s": others}


def _run_sweep(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    r = client.post("/sweeps", json=body)
    if r.status_code != 202:
        raise RuntimeError(f"POST /sweeps: {r.status_code} {r.text[:500]}")
    created = r.json()
    while True:
        status = client.get(f"/sweeps/{created['id']}", params={"rows": "false"}).json()
        if status["state"] != "running":
            break
        if time.perf_counter() - start > SWEEP_TIMEOUT_S:
            client.delete(f"/sweeps/{created['id']}")
            raise TimeoutError(f"the sweep ran past {SWEEP_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    wall = time.perf_counter() - start
    results = client.get(f"/sweeps/{created['id']}/results").json()
    return {"created": created, "status": status, "wall_s": wall, "rows": results["rows"]}


def _serial(client: httpx.Client, requests: list[dict[str, Any]]) -> tuple[float, list[dict]]:
    calls = []
    start = time.perf_counter()
    for request in requests:
        t0 = time.perf_counter()
        r = client.post("/evaluate", json=request)
        wall = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"/evaluate {request}: {r.status_code} {r.text[:500]}")
        ans = r.json()
        calls.append(
            {
                "wall_s": wall,
                "queue_s": ans["timing"]["queue_s"],
                "compute_s": ans["timing"]["compute_s"],
                "total_s": ans["timing"]["total_s"],
                "model_name": ans["model_name"],
                **{m: ans.get(m) for m in METRICS},
            }
        )
    return time.perf_counter() - start, calls


def served(store: Path, body: dict[str, Any], device: torch.device, bar=None) -> dict[str, Any]:
    env = {
        "DEVICE": device.type,
        "DEFAULT_DEADLINE_S": DEADLINE_S,
        "MAX_DEADLINE_S": DEADLINE_S,
        "SWEEP_CONCURRENCY": CONCURRENCY,
    }
    with running_server(store, **env) as base, httpx.Client(base_url=base, timeout=None) as c:
        warm_s = _warm(c, body)
        load_sweep = _load()
        sweep = _run_sweep(c, body)
        if bar is not None:
            bar.update(1)
        rows = sorted(sweep["rows"], key=lambda r: r["cell"])
        load_serial = _load()
        serial_s, calls = _serial(c, [r["request"] for r in rows])
        if bar is not None:
            bar.update(1)
    return {
        "warm_s": warm_s,
        "sweep": sweep,
        "rows": rows,
        "serial_s": serial_s,
        "calls": calls,
        "load": {"sweep_start": load_sweep, "serial_start": load_serial, "serial_end": _load()},
    }


# --- without a server ----------------------------------------------------------------------


def offline_batch(model, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """All `requests` (one model's cells, as /evaluate takes them) as one batch: every cell's
    row chunks stepped together by the core's loop body until done, then each cell scored as
    a sweep scores it. Sampling and scoring timed; each cell's metrics returned."""
    from service.api.schemas import EvaluateRequest
    from service.api.submission import spec_of
    from service.core.evaluation import score
    from service.core.offline import SampleResult, collect, count_nonfinite
    from service.core.plan import make_plan
    from service.core.step import advance, make_chunks

    bodies = [EvaluateRequest.model_validate(r) for r in requests]
    specs = [spec_of(b, b.n, b.seed) for b in bodies]
    start = time.perf_counter()
    plans = [make_plan(model, s) for s in specs]
    per_cell = [
        make_chunks(p, s.n, s.seed, model.device) for p, s in zip(plans, specs, strict=True)
    ]
    chunks = [c for cs in per_cell for c in cs]
    while True:
        live = [c for c in chunks if not c.done]
        if not live:
            break
        advance(model, live)
    outs = [collect(cs) for cs in per_cell]  # syncs the device
    sampled = time.perf_counter()
    sampling_s = sampled - start
    cells = []
    for body, spec, plan, out in zip(bodies, specs, plans, outs, strict=True):
        t0 = time.perf_counter()
        result = SampleResult(
            out,
            count_nonfinite(out),
            sampling_s,
            plan.guider.name,
            plan.scale,
            spec.seed,
            model.name,
            plan.sampler.name,
            plan.steps,
            plan.evaluations,
        )
        ev = score(model, result, body.k)
        cells.append(
            {
                "score_s": time.perf_counter() - t0,
                **{m: None if np.isnan(getattr(ev, m)) else getattr(ev, m) for m in METRICS},
            }
        )
    return {
        "rows": sum(s.n for s in specs),
        "sampling_s": sampling_s,
        "scoring_s": time.perf_counter() - sampled,
        "cells": cells,
    }


def offline(store, rows: list[dict[str, Any]], models: list[str], device: torch.device) -> dict:
    """Per model, one offline batch of its cells (after an untimed small one on the same
    plans: the model's first steps, as the server's warm-up)."""
    by_model: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(models):
        by_model[name].append(i)
    cells: list[dict | None] = [None] * len(rows)
    per_model = []
    for name, idx in by_model.items():
        model = store.load_ready(name, device)
        offline_batch(model, [{**rows[i]["request"], "n": 64} for i in idx])  # warm-up
        batch = offline_batch(model, [rows[i]["request"] for i in idx])
        for i, cell in zip(idx, batch["cells"], strict=True):
            cells[i] = cell
        # its first cell again, alone: batching's own gain, apart from the server's
        alone = offline_batch(model, [rows[idx[0]]["request"]])
        per_model.append(
            {
                "model": name,
                "cells": len(idx),
                **{k: v for k, v in batch.items() if k != "cells"},
                "alone_cell": idx[0],
                "alone_sampling_s": alone["sampling_s"],
            }
        )
    sampling = sum(m["sampling_s"] for m in per_model)
    scoring = sum(m["scoring_s"] for m in per_model)
    return {
        "s": sampling + scoring,
        "sampling_s": sampling,
        "scoring_s": scoring,
        "per_model": per_model,
        "cells": cells,
    }


def reference(store, rows: list[dict[str, Any]], models: list[str], device: torch.device) -> dict:
    """tiny-diffusion's loop, serially, timed once per (model, seed) with its samples scored,
    counted once for each of that model's and seed's cells (it runs no guidance, so their
    computations are the same)."""
    from experiments.few_step_bench import reference_loop
    from service.core.evaluation import score
    from service.core.offline import SampleResult

    groups: dict[tuple[str, int, int], int] = defaultdict(int)
    for row, name in zip(rows, models, strict=True):
        groups[(name, row["request"]["seed"], row["request"]["n"])] += 1
    runs, total = [], 0.0
    for (name, seed, n), count in groups.items():
        model = store.load_ready(name, device)
        reference_loop(model, 64, seed)  # warm-up
        t0 = time.perf_counter()
        out = reference_loop(model, n, seed)
        loop_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        ev = score(model, SampleResult(out, 0, loop_s, "baseline", 0.0, seed, name))
        score_s = time.perf_counter() - t1
        total += count * (loop_s + score_s)
        runs.append(
            {
                "model": name,
                "seed": seed,
                "n": n,
                "cells": count,
                "loop_s": loop_s,
                "score_s": score_s,
                "kl_bits": ev.kl_bits,
            }
        )
    return {"s": total, "runs": runs}


def sweep_cost(
    store,
    store_path: Path,
    device: torch.device,
    quick: bool = False,
    bar=None,
    size: dict[str, Any] | None = None,
) -> dict[str, Any]:
    size = size or (QUICK if quick else FULL)
    body = sweep_body(size["datasets"], size["guiders"], size["scales"], size["n"])
    load_before = _load()
    run = served(store_path, body, device, bar)
    rows, calls, sweep = run["rows"], run["calls"], run["sweep"]
    models = [c["model_name"] for c in calls]
    load_offline = _load()
    off = offline(store, rows, models, device)
    if bar is not None:
        bar.update(1)
    load_reference = _load()
    ref = reference(store, rows, models, device)
    if bar is not None:
        bar.update(1)
    sweep_s = sweep["wall_s"]
    status = sweep["status"]
    cell_metrics = [{m: r.get(m) for m in METRICS} for r in rows]
    split = serial_split(calls, sum(c["score_s"] for c in off["cells"]))
    by_model: dict[str, float] = defaultdict(float)
    for name, c in zip(models, calls, strict=True):
        by_model[name] += c["compute_s"]
    for m in off["per_model"]:
        m["serial_compute_s"] = by_model[m["model"]]
        m["alone_served_s"] = calls[m["alone_cell"]]["compute_s"]
    by_variant: dict[str, list[float]] = defaultdict(list)
    for r, c in zip(rows, calls, strict=True):
        by_variant[r["variant"]].append(c["compute_s"])
    return {
        "n": size["n"],
        "steps": STEPS,
        "cells": len(rows),
        "grid": body["grid"],
        "metrics": METRICS,
        "concurrency": CONCURRENCY,
        "deadline_s": DEADLINE_S,
        "warm_s": run["warm_s"]["s"],
        "warm_first_call_s": run["warm_s"]["first_call_s"],
        "warm_other_calls_s": run["warm_s"]["other_calls_s"],
        "sweep_s": sweep_s,
        "sweep_server_elapsed_s": status["elapsed_s"],
        "sweep_predicted_s": sweep["created"]["predicted_s"],
        "sweep_done": status["done"],
        "sweep_failed": status["failed"],
        "sweep_state": status["state"],
        "sweep_cell_s": [r["seconds"] for r in rows],
        "serial_s": run["serial_s"],
        "serial_split": split,
        "serial_compute_s_by_variant": {k: sum(v) for k, v in by_variant.items()},
        "serial_equal_sweep": compare(calls, cell_metrics),
        "offline_s": off["s"],
        "offline_sampling_s": off["sampling_s"],
        "offline_scoring_s": off["scoring_s"],
        "offline_per_model": off["per_model"],
        "offline_equal_sweep": compare(off["cells"], cell_metrics),
        "batch_over_serial_sampling": split["sampling_s"] / off["sampling_s"],
        "reference_s": ref["s"],
        "reference_runs": ref["runs"],
        "serial_over_sweep": run["serial_s"] / sweep_s,
        "offline_over_sweep": off["s"] / sweep_s,
        "reference_over_sweep": ref["s"] / sweep_s,
        "load": {
            "before": load_before,
            **run["load"],
            "offline_start": load_offline,
            "reference_start": load_reference,
            "after": _load(),
        },
        "cpus": os.cpu_count(),
    }


def render(s: dict[str, Any]) -> list[str]:
    g = s["grid"]
    split = s["serial_split"]
    load = s["load"]
    wall = split["wall_s"]
    eq, oq = s["serial_equal_sweep"], s["offline_equal_sweep"]

    def pct(x: float) -> str:
        return f"{x / wall:.0%}" if wall else "-"

    lines = [
        "## Sweeps against serial /evaluate, one offline batch and the reference loop",
        "",
        f"{s['cells']} cells ({len(g['dataset'])} datasets x {len(g['variant'])} guiders "
        f"{', '.join(g['variant'])} x {len(g['scale'])} scales {g['scale']}), n = {s['n']:,}, "
        f"{s['steps']} DDPM steps, one seed, metrics {', '.join(s['metrics'])}; one server "
        f"(SWEEP_CONCURRENCY {s['concurrency']}, deadline {s['deadline_s']:g} s for both), "
        f"warmed first ({s['warm_s']:.1f} s: each model's plans and held-out likelihood).",
        "",
        "| run | seconds | cells/s | samples/s | sweep's speed-up |",
        "|---|---|---|---|---|",
    ]
    samples = s["cells"] * s["n"]
    for name, key, over in (
        ("sweep (POST to done)", "sweep_s", None),
        ("same cells, one /evaluate after another", "serial_s", "serial_over_sweep"),
        (
            "one offline batch per model (sampling + scoring, no server)",
            "offline_s",
            "offline_over_sweep",
        ),
        (
            "reference loop, serially (baseline-equivalent: no guidance)",
            "reference_s",
            "reference_over_sweep",
        ),
    ):
        sec = s[key]
        lines.append(
            f"| {name} | {sec:.1f} | {s['cells'] / sec:.2f} | {samples / sec:,.0f} | "
            + (f"{s[over]:.2f}x |" if over else "1.00x |")
        )
    lines += [
        "",
        f"Sweep: {s['sweep_done']} done, {s['sweep_failed']} failed ({s['sweep_state']}); "
        f"the server's elapsed {s['sweep_server_elapsed_s']:.1f} s, predicted "
        f"{s['sweep_predicted_s']:.1f} s. The serial /evaluate's answers equal the sweep's in "
        f"{eq['equal']} of {eq['values']} values (largest difference {eq['max_abs_diff']:.3g}); "
        f"the offline batch's in {oq['equal']} of {oq['values']} "
        f"(largest difference {oq['max_abs_diff']:.3g}).",
        "",
        f"Where the serial /evaluate's {wall:.1f} s went: sampling (the batcher's compute) "
        f"{split['sampling_s']:.1f} s ({pct(split['sampling_s'])}), planning and queueing "
        f"{split['plan_and_queue_s']:.1f} s ({pct(split['plan_and_queue_s'])}), scoring "
        f"{split['scoring_s']:.1f} s ({pct(split['scoring_s'])}, timed offline on the same "
        f"cells), the rest (validation, HTTP, the response) {split['overhead_s']:.1f} s "
        f"({pct(split['overhead_s'])}; {split['overhead_per_request_s'] * 1000:.0f} ms a "
        "request). Sampling by guider: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in s["serial_compute_s_by_variant"].items())
        + ". Held-out likelihood, paid by a model's first /evaluate on a server and skipped by "
        "sweeps (here in the warm-up, outside every timing), about: "
        + ", ".join(
            f"{d} {s['warm_first_call_s'][d] - s['warm_other_calls_s'][d]:.1f} s"
            for d in s["warm_first_call_s"]
        )
        + ".",
        "",
        f"Sampling offline against served: each model's cells as one offline batch took "
        f"{s['offline_sampling_s']:.1f} s against {split['sampling_s']:.1f} s of the serial "
        f"/evaluate's sampling, one cell at a time ({s['batch_over_serial_sampling']:.2f}x). "
        "A cell a model, its batch's time per cell, then one cell (the model's first) offline "
        "alone (batching's own gain is the first against the second) and served (the server's "
        "step loop against the offline loop): "
        + ", ".join(
            f"{m['model']} {m['sampling_s'] / m['cells']:.2f} s"
            + (
                f" / {m['alone_sampling_s']:.2f} s / {m['alone_served_s']:.2f} s"
                if "alone_sampling_s" in m
                else ""
            )
            for m in s["offline_per_model"]
        )
        + ".",
        "",
        "The reference loop (tiny-diffusion's, few_step_bench.reference_loop) has no guidance: "
        "it ran the baseline (unguided) sampling of each cell's model and seed, timed once per "
        "model and seed with its samples scored, and counted once per cell: "
        + ", ".join(
            f"{r['model']} {r['loop_s']:.2f} s + {r['score_s']:.2f} s scoring x {r['cells']}"
            for r in s["reference_runs"]
        )
        + ". The guided cells also run the density head's backward pass each step, so this "
        "row does less work than the others.",
        "",
        f"Load averages (1, 5, 15 min; {s['cpus']} CPUs): before {load['before']}, sweep "
        f"{load['sweep_start']}, serial {load['serial_start']}, offline {load['offline_start']}"
        f", reference {load['reference_start']}, after {load['after']}.",
        "",
        f"- Target sweep >= {SERIAL_TARGET:g}x the same cells sent one /evaluate after "
        f"another: {s['serial_over_sweep']:.2f}x - "
        f"{verdict(s['serial_over_sweep'] >= SERIAL_TARGET)}.",
        f"- Target the sweep's throughput >= {OFFLINE_TARGET:.0%} of one offline batch of all "
        f"its rows: {s['offline_over_sweep']:.0%} - "
        f"{verdict(s['offline_over_sweep'] >= OFFLINE_TARGET)}.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    """`python -m experiments.sweep_bench [--quick | --n N --scales K]`: this section alone,
    as `dgs bench --sections sweep` runs it, or at another size (e.g. all 48 cells at a
    smaller n)."""
    # run as __main__, this file is a second module: bench() reads experiments.sweep_bench's
    import experiments.sweep_bench as section
    from experiments.bench import bench

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=".bench")
    p.add_argument("--model-store", default="model_store")
    p.add_argument("--quick", action="store_true", help="n = 1,000, one scale: 12 cells")
    p.add_argument("--n", type=int, default=None, help="samples a cell (default 10,000)")
    p.add_argument("--scales", type=int, default=None, help=f"the first K of {SCALES}")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    if a.quick and (a.n or a.scales):
        p.error("--quick is its own size: leave out --n and --scales")
    section.FULL = {**FULL, "n": a.n or FULL["n"], "scales": SCALES[: a.scales or len(SCALES)]}
    bench(out=a.out, store=a.model_store, quick=a.quick, sections=("sweep",), device=a.device)
    print((Path(a.out) / "bench.md").read_text())


if __name__ == "__main__":
    main()
