"""`dgs bench`'s guidance section: what each guidance method costs per sample.

Every method at n = 10,000 as a ratio to baseline DDPM on the same model, rounds interleaved
and every other round in reverse order (drift on a shared machine then hits all methods alike)
and the best round kept. The `score`
gradient reuses the evaluation's own eps, so its target is baseline's cost within 10%. APG,
CFG++ and CFG-Zero* run cfg's two passes plus a few elementwise operations: each within 5% of
cfg on the same model.
"""

from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from service.core.guiders import get_guider
from service.core.offline import sample
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore

N = 10_000
FULL = {"n": N, "rounds": 3}
QUICK = {"n": 64, "rounds": 1, "steps": 8}  # `dgs bench --quick`: a smoke run, not a figure
SCORE_TARGET = 1.10
# cfg runs two network passes a step, with the interval [0.3, 3] 1.26, autoguidance one plus the
# guide's (a quarter of the width): targets with 10% for the sampler's own work
CFG_TARGET, INTERVAL_TARGET, AUTOGUIDANCE_TARGET = 2.2, 1.4, 1.5
NEW_GUIDER_TARGET = 1.05  # APG, CFG++, CFG-Zero* against cfg
NEW_GUIDERS = ("apg", "cfg_plus_plus", "cfg_zero_star")
INTERVAL = [0.3, 3.0]
# (model, variant, gradient, scale[, extra arguments]): baseline DDPM first on each model, the
# reference; on the conditional model baseline is its null class, then class 0 alone
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
    "{d}-conditional-improved": [
        ("baseline", None, None),
        ("baseline", None, None, {"label": 0}),
        ("cfg", None, 3.0, {"label": 0}),
        ("cfg", None, 3.0, {"label": 0, "interval": INTERVAL}),
        ("autoguidance", None, 2.0, {"label": 0, "guide": "{d}-conditional-guide"}),
        ("apg", None, 3.0, {"label": 0}),
        ("cfg_plus_plus", None, 0.3, {"label": 0}),
        ("cfg_zero_star", None, 3.0, {"label": 0}),
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
        runs = [(m[0], m[1], m[2], _extra(store, device, dataset, m)) for m in methods]
        best = [math.inf] * len(runs)
        for variant, gradient, scale, kw in runs:  # warm-up; density's first plan calibrates
            _run(model, variant, gradient, scale, min(n, 512), steps, kw)
        for r in range(rounds):
            # every other round in reverse, so no method is always the one after the others
            order = range(len(runs)) if r % 2 == 0 else range(len(runs) - 1, -1, -1)
            for i in order:
                variant, gradient, scale, kw = runs[i]
                start = time.perf_counter()
                _run(model, variant, gradient, scale, n, steps, kw)
                best[i] = min(best[i], time.perf_counter() - start)
        cfg = next((s for r, s in zip(runs, best, strict=True) if _plain_cfg(r)), None)
        for (variant, gradient, scale, kw), seconds in zip(runs, best, strict=True):
            plan_sampler = get_guider(variant).default_sampler
            rows.append(
                {
                    "model": model.name,
                    "variant": variant,
                    "gradient": gradient or "",
                    "options": _options(kw),
                    "scale": scale,
                    "sampler": plan_sampler,
                    "n": n,
                    "seconds_per_sample": seconds / n,
                    "over_baseline": seconds / best[0],
                    **({"over_cfg": seconds / cfg} if cfg and variant in NEW_GUIDERS else {}),
                }
            )
        if bar is not None:
            bar.update(len(methods))
    return rows


def _run(model, variant, gradient, scale, n, steps, kw) -> None:
    kw = dict(kw)
    guide = kw.pop("guide", None)
    sample(model, SampleSpec(variant, scale, n, 0, steps, gradient=gradient, **kw), guide)


def _plain_cfg(run: tuple) -> bool:
    return run[0] == "cfg" and "interval" not in run[3]


def _extra(store: CheckpointStore, device: torch.device, dataset: str, method: tuple) -> dict:
    """A method's extra arguments, its guide model loaded by name."""
    kw = dict(method[3]) if len(method) > 3 else {}
    if "guide" in kw:
        kw["guide"] = store.load_ready(kw["guide"].format(d=dataset), device)
    if "interval" in kw:
        kw["interval"] = tuple(kw["interval"])
    return kw


def _options(kw: dict) -> str:
    parts = [f"class {kw['label']}"] if "label" in kw else []
    if "interval" in kw:
        parts.append(f"interval [{kw['interval'][0]:g}, {kw['interval'][1]:g}]")
    if "guide" in kw:
        parts.append(f"guide {kw['guide'].name}")
    return ", ".join(parts)


def _ratio_line(rows: list[dict], what: str, pick, target: float) -> list[str]:
    found = [r["over_baseline"] for r in rows if pick(r)]
    if not found:
        return []
    verdict = "met" if max(found) <= target else "**missed**"
    return [f"- Target {what} at most {target:.1f}x baseline: {max(found):.2f}x - {verdict}."]


def render(rows: list[dict]) -> list[str]:
    lines = [
        "## Guidance methods: time per sample against baseline DDPM on the same model",
        "",
        f"n = {rows[0]['n']:,}, best of interleaved rounds; prior and density run Heun "
        "(2S - 1 network evaluations for S steps), the rest DDPM (S).",
        "",
        "| model | variant | gradient | options | sampler | s/sample | / baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['gradient']} | {r.get('options', '')} "
            f"| {r['sampler']} | {r['seconds_per_sample']:.2e} | {r['over_baseline']:.2f}x |"
        )
    score = [r["over_baseline"] for r in rows if r["gradient"] == "score"]
    lines.append("")
    if score:  # a section run on some models only may have none
        verdict = "met" if max(score) <= SCORE_TARGET else "**missed**"
        lines.append(
            f"- Target `score` gradient within {SCORE_TARGET - 1:.0%} of baseline: worst "
            f"{max(score):.2f}x - {verdict}."
        )
    lines += _ratio_line(
        rows, "cfg (2 passes a step)", lambda r: r["variant"] == "cfg" and not _has(r), CFG_TARGET
    )
    lines += _ratio_line(rows, "cfg with the interval", _has, INTERVAL_TARGET)
    lines += _ratio_line(
        rows, "autoguidance", lambda r: r["variant"] == "autoguidance", AUTOGUIDANCE_TARGET
    )
    for r in rows:
        if "over_cfg" in r:
            verdict = "met" if r["over_cfg"] <= NEW_GUIDER_TARGET else "**missed**"
            lines.append(
                f"- Target {r['variant']} within {NEW_GUIDER_TARGET - 1:.0%} of cfg on "
                f"{r['model']}: {r['over_cfg']:.3f}x - {verdict}."
            )
    return [*lines, ""]


def _has(row: dict) -> bool:
    return "interval" in row.get("options", "")
