"""`dgs reproduce`'s comparison of the guiders of class-conditional models at matched weights.

cfg, cfg with each weight schedule (interval, linear, cosine), APG, CFG-Zero*, CFG++ and
autoguidance, at w = 1, 2, 3, 5, 7, with DDPM and deterministic DDIM (the probability-flow
ODE's first-order solver), on class 0 of each labelled dataset, scored by the code behind
/evaluate's class metrics (class KL, support fraction, shift away from the other class,
E[1 / p(c | x)]) and by improved precision and recall against the class's own data.

Matched weights: every guider but CFG++ takes w itself. CFG++'s l is another unit: with the
sampler's per-stage re-noising ratio rho_t (core/samplers/base.py) one CFG++ stage at l is exactly
a cfg stage at w_t = (1 - rho_t) l, so CFG++ runs at l = w / mean_t(1 - rho_t), the l whose
mean effective weight is w (at 100 steps of the shipped conditional models' schedule about
w / 12 with DDIM and w / 6 with DDPM), capped at CFG++'s largest l, 1.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from experiments.guidance_sweep import LABEL, available  # noqa: E402
from service.core.class_metrics import class_scores  # noqa: E402
from service.core.classes import class_reference  # noqa: E402
from service.core.coverage import precision_recall  # noqa: E402
from service.core.offline import sample  # noqa: E402
from service.core.plan import make_plan  # noqa: E402
from service.core.plan_columns import RENOISE_COL  # noqa: E402
from service.core.spec import SampleSpec  # noqa: E402
from service.core.store import CheckpointStore  # noqa: E402

WEIGHTS = (1.0, 2.0, 3.0, 5.0, 7.0)
SAMPLERS = ("ddpm", "ddim")  # ddim at eta 0: the ODE
INTERVAL = (0.3, 3.0)
METHODS = {  # name -> (variant, request fields)
    "cfg": ("cfg", {}),
    "cfg-interval": ("cfg", {"interval": INTERVAL}),
    "cfg-linear": ("cfg", {"schedule": "linear"}),
    "cfg-cosine": ("cfg", {"schedule": "cosine"}),
    "apg": ("apg", {}),
    "cfg_zero_star": ("cfg_zero_star", {}),
    "cfg_plus_plus": ("cfg_plus_plus", {}),
    "autoguidance": ("autoguidance", {}),
}
METRICS = ("class_kl_bits", "support_fraction", "mean_shift_away", "mean_reciprocal_probability")


def matched_l(model, w: float, sampler: str, steps: int | None) -> float:
    """CFG++'s l whose mean effective cfg weight over the stages is w."""
    plan = make_plan(model, SampleSpec("cfg_plus_plus", 0.5, sampler=sampler, steps=steps, label=0))
    mean = float(np.mean([1 - row[RENOISE_COL] for row in plan.stages]))
    return min(1.0, w / mean)


def compare(
    out: Path,
    store: CheckpointStore,
    n: int = 2_000,
    seed: int = 0,
    steps: int | None = None,
    weights: tuple[float, ...] = WEIGHTS,
    datasets: list[str] | None = None,
    methods: tuple[str, ...] = tuple(METHODS),
) -> list[dict]:
    """Sample and score every (dataset, sampler, method, w); writes guider_comparison.{csv,md}
    guider_separation.md (excess class KL over cfg at matched separation) and
    guider_comparison.png."""
    models = available(store, datasets)
    if not models:
        (out / "guider_comparison.md").write_text("Not run: no conditional models.\n")
        return []
    runs = [
        (d, smp, m, w)
        for d, pair in models.items()
        for smp in SAMPLERS
        for m in methods
        if m != "autoguidance" or pair.guide is not None
        for w in weights
    ]
    rows = []
    for d, smp, method, w in tqdm(runs, desc="guider comparison", unit="run"):
        variant, fields = METHODS[method]
        pair = models[d]
        scale = matched_l(pair.main, w, smp, steps) if variant == "cfg_plus_plus" else w
        spec = SampleSpec(variant, scale, n, seed, steps, smp, label=LABEL, **fields)
        result = sample(pair.main, spec, pair.guide if variant == "autoguidance" else None)
        scores = class_scores(pair.main, result.samples, LABEL, 5)
        finite = result.samples[np.isfinite(result.samples).all(axis=1)]
        ref = class_reference(d, LABEL)
        cov = precision_recall(ref[np.random.default_rng(seed).permutation(len(ref))[:n]], finite)
        rows.append(
            {
                "dataset": d,
                "sampler": smp,
                "method": method,
                "w": w,
                "scale": round(scale, 6),
                **{k: getattr(scores, k) for k in METRICS},
                "data_support_fraction": scores.data_support_fraction,
                "data_mean_reciprocal_probability": scores.data_mean_reciprocal_probability,
                "precision": cov.precision,
                "recall": cov.recall,
                "nonfinite": result.nonfinite,
                "seconds": round(result.seconds, 3),
            }
        )
    _write(rows, out)
    write_separation(rows, out / "guider_separation.md")
    plot(rows, out / "guider_comparison.png")
    return rows


def _num(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if abs(v) < 1e3 else f"{v:.2e}"


def _write(rows: list[dict], out: Path) -> None:
    with open(out / "guider_comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| dataset | sampler | method | w | scale | class KL | support | shift away | "
        "E[1/p(c|x)] | precision | recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['sampler']} | {r['method']} | {r['w']:g} | {r['scale']:g} "
            f"| {_num(r['class_kl_bits'])} | {_num(r['support_fraction'])} "
            f"| {r['mean_shift_away']:+.3f} | {_num(r['mean_reciprocal_probability'])} "
            f"| {_num(r['precision'])} | {_num(r['recall'])} |"
        )
    (out / "guider_comparison.md").write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], path: Path) -> None:
    """The trade-off: class KL against the shift away from the other class, a line per method
    through w = 1 .. 7; rows: datasets, columns: samplers. Lower and further right is better."""
    datasets = sorted({r["dataset"] for r in rows})
    samplers = [s for s in SAMPLERS if any(r["sampler"] == s for r in rows)]
    fig, axes = plt.subplots(
        len(datasets),
        len(samplers),
        figsize=(5 * len(samplers), 3.6 * len(datasets)),
        squeeze=False,
    )
    for i, d in enumerate(datasets):
        for j, smp in enumerate(samplers):
            ax = axes[i, j]
            for method in METHODS:
                pts = [
                    r for r in rows if (r["dataset"], r["sampler"], r["method"]) == (d, smp, method)
                ]
                if pts:
                    ys = [np.nan if r["class_kl_bits"] is None else r["class_kl_bits"] for r in pts]
                    ax.plot([r["mean_shift_away"] for r in pts], ys, marker="o", ms=3, label=method)
            ax.set_title(f"{d}, {smp}", fontsize=9)
            ax.set_xlabel("shift away from the other class")
            ax.set_ylabel("class KL (bits)")
        axes[i, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def matched_separation(rows: list[dict]) -> list[dict]:
    """For every point with w > 1: cfg's class KL at the same shift away (linear interpolation
    along cfg's own curve of the same dataset and sampler), and the method's KL minus it.
    Negative: the method separates the classes as far as cfg at a lower class KL."""
    out = []
    for r in rows:
        if r["w"] <= 1 or r["method"] == "cfg" or r["class_kl_bits"] is None:
            continue
        cfg = sorted(
            (c["mean_shift_away"], c["class_kl_bits"])
            for c in rows
            if (c["dataset"], c["sampler"], c["method"]) == (r["dataset"], r["sampler"], "cfg")
        )
        xs, ys = [c[0] for c in cfg], [c[1] for c in cfg]
        inside = xs[0] <= r["mean_shift_away"] <= xs[-1]
        at = float(np.interp(r["mean_shift_away"], xs, ys)) if inside else math.nan
        out.append({**r, "cfg_kl_at_shift": at, "excess_kl": r["class_kl_bits"] - at})
    return out


def write_separation(rows: list[dict], path: Path) -> list[str]:
    """Per method, dataset and sampler: the mean excess class KL over cfg at matched
    separation (points outside cfg's range of shifts left out)."""
    pts = matched_separation(rows)
    keys = sorted({(p["method"], p["dataset"], p["sampler"]) for p in pts})
    lines = [
        "| method | dataset | sampler | points | mean excess class KL over cfg at the same "
        "shift (bits) | largest shift reached |",
        "|---|---|---|---|---|---|",
    ]
    for method, d, smp in keys:
        mine = [p for p in pts if (p["method"], p["dataset"], p["sampler"]) == (method, d, smp)]
        ok = [p["excess_kl"] for p in mine if not math.isnan(p["excess_kl"])]
        mean = f"{np.mean(ok):+.3f}" if ok else "n/a"
        top = max(p["mean_shift_away"] for p in mine)
        lines.append(f"| {method} | {d} | {smp} | {len(ok)} | {mean} | {top:+.3f} |")
    path.write_text("\n".join(lines) + "\n")
    return lines
