"""`dgs bench`'s guidance section (issue 12): what each guidance method costs per sample.

Every method at n = 10,000 as a ratio to baseline DDPM on the same model, rounds interleaved
(drift on a shared machine then hits all methods alike) and the best round kept. The `score`
gradient reuses the evaluation's own eps, so its target is baseline's cost within 10%.
"""

from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from service.core.guidance import get_variant
from service.core.sampling import sample
from service.core.store import CheckpointStore

N = 10_000
FULL = {"n": N, "rounds": 3}
QUICK = {"n": 64, "rounds": 1, "steps": 8}  # `dgs bench --quick`: a smoke run, not a figure
SCORE_TARGET = 1.10
# (model, variant, gradient, scale): baseline DDPM first on each model, the reference
METHODS = {
    "{d}-plain-improved": [
        ("baseline", None, None),
        ("fixed", "score", 0.005),
        ("smoothed", "score", 0.005),
        ("prior", None, 0.9),
        ("density", None, 0.5),
    ],
    "{d}-density": [("baseline", None, None), ("fixed", "head", None), ("fixed", "score", 0.005)],
    "{d}-energy-improved": [
        ("baseline", None, None),
        ("fixed", "energy", 0.005),
        ("fixed", "score", 0.005),
        ("prior", None, 0.9),
        ("density", None, 0.5),
    ],
}


def methods_count() -> int:
    return sum(len(m) for m in METHODS.values())


def guidance_cost(
    store: CheckpointStore,
    device: torch.device,
    bar: tqdm | None = None,
    n: int = N,
    rounds: int = 3,
    dataset: str = "moons",
    steps: int | None = None,
) -> list[dict]:
    rows = []
    for pattern, methods in METHODS.items():
        model = store.load_ready(pattern.format(d=dataset), device)
        best = [math.inf] * len(methods)
        for variant, gradient, scale in methods:  # warm-up; density's first plan calibrates
            sample(model, variant, scale, n=min(n, 512), seed=0, steps=steps, gradient=gradient)
        for _ in range(rounds):
            for i, (variant, gradient, scale) in enumerate(methods):
                start = time.perf_counter()
                sample(model, variant, scale, n=n, seed=0, steps=steps, gradient=gradient)
                best[i] = min(best[i], time.perf_counter() - start)
        for (variant, gradient, scale), seconds in zip(methods, best, strict=True):
            plan_sampler = get_variant(variant).default_sampler
            rows.append(
                {
                    "model": model.name,
                    "variant": variant,
                    "gradient": gradient or "",
                    "scale": scale,
                    "sampler": plan_sampler,
                    "n": n,
                    "seconds_per_sample": seconds / n,
                    "over_baseline": seconds / best[0],
                }
            )
        if bar is not None:
            bar.update(len(methods))
    return rows


def render(rows: list[dict]) -> list[str]:
    lines = [
        "## Guidance methods: time per sample against baseline DDPM on the same model",
        "",
        f"n = {rows[0]['n']:,}, best of interleaved rounds; prior and density run Heun "
        "(2S - 1 network evaluations for S steps), the rest DDPM (S).",
        "",
        "| model | variant | gradient | sampler | s/sample | / baseline |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['gradient']} | {r['sampler']} "
            f"| {r['seconds_per_sample']:.2e} | {r['over_baseline']:.2f}x |"
        )
    score = [r["over_baseline"] for r in rows if r["gradient"] == "score"]
    lines += [
        "",
        f"- Target `score` gradient within {SCORE_TARGET - 1:.0%} of baseline: worst "
        f"{max(score):.2f}x - {'met' if max(score) <= SCORE_TARGET else '**missed**'}.",
        "",
    ]
    return lines
