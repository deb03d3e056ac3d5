"""`dgs reproduce`'s guidance-weight sweep: what cfg, cfg with a guidance interval,
and autoguidance do to one class of each labelled dataset as w goes from 0 to 10.

Every point is the service's own sampler (`core.sampling.sample`) scored by the code behind
`/evaluate`'s class metrics (`core.class_metrics`): support fraction, distance from the class's
centre, class KL and E[1 / p(c | x)], each beside the class's own data's score.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from service.core.class_metrics import class_scores  # noqa: E402
from service.core.classes import class_reference  # noqa: E402
from service.core.data import LABELLED  # noqa: E402
from service.core.manifest import GUIDE_RECIPE, ModelKind  # noqa: E402
from service.core.offline import sample  # noqa: E402
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore  # noqa: E402

WEIGHTS = (0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0)
# The interval the sweep measures: the middle noise levels, in the spirit of Kynkaanniemi et
# al.'s (their ImageNet-512 optimum is sigma in (0.28, 5.42] for data of sd 0.5; ours have
# sd ~1-2, and the logsnr schedule's sigma runs from 0.002 to 14)
INTERVAL = (0.3, 3.0)
METHODS = {
    "cfg": ("cfg", None),
    "cfg-interval": ("cfg", INTERVAL),
    "autoguidance": ("autoguidance", None),
}
METRICS = ("support_fraction", "mean_reciprocal_probability", "class_kl_bits", "mean_shift_away")
DATA_VALUES = {
    "support_fraction": "data_support_fraction",
    "mean_reciprocal_probability": "data_mean_reciprocal_probability",
}
CONDITIONAL_RECIPE = "improved"
LABEL = 0  # the class swept: boxes and gaussians 'left', moons 'upper'


@dataclass(frozen=True)
class SweepModels:
    main: object
    guide: object | None


def available(store: CheckpointStore, datasets: list[str] | None = None) -> dict:
    """dataset -> its conditional model and guide, for the labelled datasets in the store."""
    names = store.names()
    found = {}
    for d in datasets or sorted(LABELLED):
        main = ModelKind(d, "conditional", CONDITIONAL_RECIPE).name
        guide = ModelKind(d, "conditional", GUIDE_RECIPE).name
        if main in names:
            found[d] = SweepModels(
                store.load_ready(main), store.load_ready(guide) if guide in names else None
            )
    return found


def sweep(
    out: Path,
    store: CheckpointStore,
    n: int = 2_000,
    seed: int = 0,
    steps: int | None = None,
    weights: tuple[float, ...] = WEIGHTS,
    datasets: list[str] | None = None,
) -> list[dict]:
    """Sample and score every (dataset, method, w); writes guidance_sweep.{csv,md} and figures."""
    models = available(store, datasets)
    if not models:
        (out / "guidance_sweep.md").write_text("Not run: the store has no conditional models.\n")
        return []
    runs = [
        (d, m, w)
        for d, pair in models.items()
        for m in METHODS
        if m != "autoguidance" or pair.guide is not None
        for w in weights
    ]
    rows, samples = [], {}
    for d, method, w in tqdm(runs, desc="guidance sweep", unit="run"):
        variant, interval = METHODS[method]
        pair = models[d]
        guide = pair.guide if variant == "autoguidance" else None
        result = sample(
            pair.main,
            SampleSpec(
                variant=variant,
                scale=w,
                n=n,
                seed=seed,
                steps=steps,
                label=LABEL,
                interval=interval,
            ),
            guide=guide,
        )
        scores = class_scores(pair.main, result.samples, LABEL, 5)
        samples[d, method, w] = result.samples
        rows.append(
            {
                "dataset": d,
                "method": method,
                "w": w,
                **{k: v for k, v in scores.as_dict().items() if k != "support_rule"},
                "nonfinite": result.nonfinite,
                "seconds": round(result.seconds, 3),
            }
        )
    _write(rows, out)
    np.savez_compressed(
        out / "guidance_sweep_samples.npz",
        **{f"{d}_{m}_w{w:g}": s for (d, m, w), s in samples.items()},
    )
    curves(rows, out / "guidance_sweep.png")
    for d in models:
        sample_panels(samples, d, weights, out / f"guidance_samples_{d}.png")
    return rows


def _write(rows: list[dict], out: Path) -> None:
    with open(out / "guidance_sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| dataset | method | w | support | data's | E[1/p(c|x)] | data's | class KL | "
        "centre dist | data's | shift away | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kl = "n/a" if r["class_kl_bits"] is None else f"{r['class_kl_bits']:.3f}"
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['w']:g} | {r['support_fraction']:.3f} "
            f"| {r['data_support_fraction']:.3f} | {_num(r['mean_reciprocal_probability'])} "
            f"| {r['data_mean_reciprocal_probability']:.3f} | {kl} "
            f"| {r['mean_centre_distance']:.3f} | {r['data_mean_centre_distance']:.3f} "
            f"| {r['mean_shift_away']:+.3f} | {r['seconds']:.1f} |"
        )
    (out / "guidance_sweep.md").write_text("\n".join(lines) + "\n")


def _num(v: float) -> str:
    return "n/a" if v is None or math.isnan(v) else (f"{v:.3f}" if v < 1e3 else f"{v:.2e}")


def curves(rows: list[dict], path: Path) -> None:
    """Rows: datasets; columns: the three metrics against w, a line per method, the data's
    value dashed."""
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(
        len(datasets), len(METRICS), figsize=(4 * len(METRICS), 3.2 * len(datasets)), squeeze=False
    )
    for i, d in enumerate(datasets):
        for j, metric in enumerate(METRICS):
            ax = axes[i, j]
            for method in METHODS:
                pts = [r for r in rows if r["dataset"] == d and r["method"] == method]
                if pts:
                    ys = [np.nan if r[metric] is None else r[metric] for r in pts]
                    ax.plot([r["w"] for r in pts], ys, marker="o", label=method)
            floor = DATA_VALUES.get(metric)
            if floor:
                ax.axhline(next(r for r in rows if r["dataset"] == d)[floor], ls="--", c="gray")
            if metric == "mean_reciprocal_probability":
                ax.set_yscale("log")
            if metric in ("class_kl_bits", "mean_shift_away"):
                ax.axhline(0.0, ls="--", c="gray")
            ax.set_title(f"{d}: {metric}", fontsize=9)
            ax.set_xlabel("w")
        axes[i, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def sample_panels(samples: dict, dataset: str, weights: tuple[float, ...], path: Path) -> None:
    """Rows: methods; columns: w; the class's data faint behind its samples."""
    methods = [m for m in METHODS if (dataset, m, weights[0]) in samples]
    fig, axes = plt.subplots(
        len(methods), len(weights), figsize=(2.2 * len(weights), 2.2 * len(methods)), squeeze=False
    )
    ref = class_reference(dataset, LABEL)[:3000]
    for i, m in enumerate(methods):
        for j, w in enumerate(weights):
            ax = axes[i, j]
            pts = samples[dataset, m, w][:2000]
            ax.scatter(ref[:, 0], ref[:, 1], s=1, c="lightgray")
            ax.scatter(pts[:, 0], pts[:, 1], s=1, c="tab:blue")
            ax.set_xlim(-4.5, 4.5)
            ax.set_ylim(-4.5, 4.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{m} w={w:g}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
