"""The reproduction's figures (matplotlib, Agg): samples, KL bars, loss curves, scale sweep."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.paper import GRID  # noqa: E402
from service.core.data import reference_points  # noqa: E402
from service.core.store import CheckpointStore  # noqa: E402

PLOT_POINTS = 4000  # per panel: enough to see the shape, small enough for a light PNG
VARIANT_COLORS = {
    "baseline": "black",
    "fixed": "tab:red",
    "adaptive": "tab:orange",
    "smoothed": "tab:blue",
    "minimal": "tab:green",
}


def _label(objective: str, variant: str) -> str:
    return f"{variant}\n({objective} model)"


def samples_grid(samples: dict, datasets: list[str], path: Path) -> None:
    """Rows: datasets; columns: the six grid rows; the real data faint behind the samples."""
    fig, axes = plt.subplots(
        len(datasets),
        len(GRID),
        figsize=(2.6 * len(GRID), 2.6 * len(datasets)),
        squeeze=False,
    )
    for i, dataset in enumerate(datasets):
        data = reference_points(dataset)[::20]
        box_lo, box_hi = data.min(axis=0) - 0.5, data.max(axis=0) + 0.5
        for j, (objective, variant) in enumerate(GRID):
            ax = axes[i, j]
            xs = samples[dataset, objective, variant]
            finite = xs[np.isfinite(xs).all(axis=1)][:PLOT_POINTS]
            inside = ((finite >= box_lo) & (finite <= box_hi)).all(axis=1)
            # the view holds the data and the bulk of the samples, wherever they went
            lo = np.minimum(box_lo, np.percentile(finite, 2, axis=0)) if len(finite) else box_lo
            hi = np.maximum(box_hi, np.percentile(finite, 98, axis=0)) if len(finite) else box_hi
            ax.scatter(data[:, 0], data[:, 1], s=1, c="0.8", rasterized=True)
            ax.scatter(
                finite[:, 0],
                finite[:, 1],
                s=1,
                alpha=0.3,
                c=VARIANT_COLORS[variant],
                rasterized=True,
            )
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.tick_params(labelsize=6)
            ax.text(
                0.02,
                0.02,
                f"{1 - inside.mean():.0%} off the data",
                transform=ax.transAxes,
                fontsize=7,
            )
            if i == 0:
                ax.set_title(_label(objective, variant), fontsize=9)
            if j == 0:
                ax.set_ylabel(dataset)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def kl_bars(cells: list, path: Path) -> None:
    """KL (bits, log scale) per dataset, one bar per grid row."""
    datasets = sorted({c.dataset for c in cells})
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(GRID)
    for j, (objective, variant) in enumerate(GRID):
        values = [
            next(
                c.kl_bits
                for c in cells
                if c.dataset == d and c.objective == objective and c.variant == variant
            )
            for d in datasets
        ]
        ax.bar(
            np.arange(len(datasets)) + j * width,
            values,
            width,
            label=_label(objective, variant).replace("\n", " "),
            color=VARIANT_COLORS[variant],
            alpha=1.0 if objective == "plain" else 0.6,
            hatch="" if objective == "plain" or variant != "baseline" else "//",
        )
    ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets)
    ax.set_yscale("log")
    ax.set_ylabel("KL(data || samples), bits")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps the legend below the axes
    plt.close(fig)


def read_loss_log(path: Path) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def loss_curves(models: dict, store: CheckpointStore, path: Path) -> None:
    """Per dataset: the training loss (symlog) and mean log p_hat of both objectives."""
    datasets = sorted(models)
    fig, axes = plt.subplots(2, len(datasets), figsize=(4 * len(datasets), 6), squeeze=False)
    for j, dataset in enumerate(datasets):
        for model, color in zip(models[dataset], ("black", "tab:red"), strict=True):
            log = read_loss_log(store.path(model.name) / "loss.csv")
            k = max(1, len(log["step"]) // 500)  # smooth to ~500 points
            steps = log["step"][::k]
            for row, key in enumerate(("loss", "mean_log_p")):
                smooth = np.convolve(log[key], np.ones(k) / k, mode="same")[::k]
                axes[row, j].plot(steps, smooth, color=color, lw=1, label=model.objective)
        axes[0, j].set_title(dataset)
        for row, name in enumerate(("training loss", "mean log p_hat")):
            axes[row, j].set_yscale("symlog", linthresh=1.0)
            axes[row, j].set_ylabel(name)
            axes[row, j].set_xlabel("step")
        axes[0, j].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scale_sweep(rows: list[dict], path: Path) -> None:
    """KL against guidance scale (log x) for fixed and adaptive on each density model,
    with both baselines sampled at the same n as reference lines."""
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.5), squeeze=False)
    for j, dataset in enumerate(datasets):
        ax = axes[0, j]
        for variant in sorted(
            {r["variant"] for r in rows} - {"baseline-plain", "baseline-density"}
        ):
            pts = sorted(
                (r["scale"], r["kl_bits"])
                for r in rows
                if r["dataset"] == dataset and r["variant"] == variant
            )
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                "o-",
                color=VARIANT_COLORS[variant],
                label=variant,
            )
        for objective, style in (("plain", "--"), ("density", ":")):
            base = next(
                (
                    r["kl_bits"]
                    for r in rows
                    if r["dataset"] == dataset and r["variant"] == f"baseline-{objective}"
                ),
                math.nan,
            )
            ax.axhline(base, color="black", ls=style, lw=1, label=f"baseline, {objective} model")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(dataset)
        ax.set_xlabel("guidance scale s")
        ax.set_ylabel("KL, bits")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def recipe_samples(samples: dict, improved: dict, datasets: list[str], path: Path) -> None:
    """Baseline samples of the paper-recipe and improved-recipe plain models, side by side."""
    fig, axes = plt.subplots(len(datasets), 2, figsize=(6, 3 * len(datasets)), squeeze=False)
    for i, dataset in enumerate(datasets):
        data = reference_points(dataset)[::20]
        for j, (title, xs) in enumerate(
            (
                ("paper recipe", samples[dataset, "plain", "baseline"]),
                ("improved recipe", improved[dataset]),
            )
        ):
            ax = axes[i, j]
            ax.scatter(data[:, 0], data[:, 1], s=1, c="0.8", rasterized=True)
            pts = xs[np.isfinite(xs).all(axis=1)][:PLOT_POINTS]
            ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4, c="black", rasterized=True)
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(title)
            if j == 0:
                ax.set_ylabel(dataset)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
