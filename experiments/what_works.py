"""The "what works" measurements: the energy models, and which density-based guidance works.

    python -m experiments.what_works [--n 2000] [--out results]

Writes to `out`:
- energy.md: each energy model beside its dataset's improved plain model (baseline KL,
  held-out NLL from the ODE), and the two likelihoods of the energy model compared on held-out
  points: the grid-normalised exp(E(x, 0)) and the probability-flow ODE at the same noise level.
- what_works.md / what_works.csv: dataset x (model, variant, gradient, scale) with KL,
  precision, recall, mean log-density of the samples, non-finite count and time per sample;
  for `density`, the target and how many samples land within 0.5 nats of it, by the tracked
  value and by the exact ODE likelihood of a subset.
- what_works_samples.png, coverage_vs_scale.png, density_targets.png.

"Mean log p" is measured under one yardstick for every row, the data's own density (a KDE of
100,000 fresh points, `data_log_density`), so rows compare. (The grid-normalised energy model
was the first choice: its log Z is dominated by spurious peaks of E away from the data, where
nothing constrains it; energy.md shows it.)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from tqdm import tqdm

from experiments import score_rescaling
from experiments.machine import describe
from service.core.data import PAPER_DATASETS, get_dataset
from service.core.energy import data_box, energy_log_density, grid_normalizer
from service.core.evaluation import score
from service.core.likelihood import HELDOUT_SEED, bits_per_dim, model_log_likelihood
from service.core.offline import sample
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore

MODELS = {"plain": "{d}-plain-improved", "density": "{d}-density", "energy": "{d}-energy-improved"}
QUANTILES = (0.1, 0.5, 0.9)
SCORE_SCALES = (-0.02, -0.005, 0.005, 0.02)
# (model, variant, gradient, scale, sampler)
CELLS: list[tuple[str, str, str | None, float | None, str]] = [
    ("plain", "baseline", None, None, "ddpm"),
    *(("plain", "fixed", "score", s, "ddpm") for s in SCORE_SCALES),
    *(("plain", "prior", None, q, "heun") for q in (0.1, 0.9)),
    *(("plain", "density", None, q, "heun") for q in QUANTILES),
    ("density", "fixed", "head", None, "ddpm"),  # the paper's default
    ("density", "fixed", "score", 0.005, "ddpm"),
    ("energy", "baseline", None, None, "ddpm"),
    *(("energy", "fixed", "energy", s, "ddpm") for s in (-0.005, 0.005)),
    *(("energy", "prior", None, q, "heun") for q in (0.1, 0.9)),
    *(("energy", "density", None, q, "heun") for q in QUANTILES),
]
KDE_POINTS, KDE_SEED, KDE_BANDWIDTH, KDE_RADIUS = 100_000, 7_000_007, 0.03, 5.0
# the timesteps where the two likelihoods of an energy model are compared: the data's own
# noise level (sigma 0.002 on the improved schedule) and a smooth one (sigma 0.17)
CHECK_LEVELS = (0, 50)
GRID_SPACING = 0.005  # the normaliser's grid; below the data's finest features (0.03-0.09)
EXACT_CHECK = 60  # samples of each density cell whose exact ODE likelihood is computed
# the solver's tolerance there: its error (~1e-2 nats at most) is far inside the 0.5 nats checked
EXACT_TOL = 1e-4


@dataclass
class Row:
    dataset: str
    model: str
    variant: str
    gradient: str
    scale: float
    sampler: str
    kl_bits: float
    precision: float
    recall: float
    mean_log_p: float  # under the data's own density (a KDE, see data_log_density), nats
    median_log_p: float  # the same, robust: one sample far off moves the mean by nats
    nonfinite: int
    seconds_per_sample: float
    target_log_p: float = float("nan")
    tracked_within: float = float("nan")  # fraction of samples within 0.5 nats, tracked
    exact_within: float = float("nan")  # the same by the exact ODE likelihood (a subset)
    exact_minus_tracked_sd: float = float("nan")


def data_log_density(dataset: str, bandwidth: float = KDE_BANDWIDTH) -> Callable:
    """The yardstick for "mean log p": the log-density of the dataset itself, a Gaussian KDE of
    KDE_POINTS fresh data points with an isotropic kernel of `bandwidth` (below the datasets'
    finest features, 0.03-0.09, and above their point spacing). It is the same for every
    model and variant of a dataset, so rows compare; samples far from the data get very low
    values rather than none."""
    points = get_dataset(dataset, KDE_POINTS, KDE_SEED).astype(np.float64)
    tree = cKDTree(points)
    log_norm = math.log(len(points) * 2 * math.pi * bandwidth**2)

    def log_density(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        x = x[np.isfinite(x).all(axis=1)]
        # every kernel within KDE_RADIUS widths (the rest add < e^-12.5 each)
        pairs = cKDTree(x).sparse_distance_matrix(
            tree, KDE_RADIUS * bandwidth, output_type="ndarray"
        )
        weights = np.exp(-0.5 * (pairs["v"] / bandwidth) ** 2)
        total = np.bincount(pairs["i"], weights=weights, minlength=len(x))
        with np.errstate(divide="ignore"):
            out = np.log(total) - log_norm
        alone = total == 0  # far from the data: the nearest kernel alone, still finite
        if alone.any():
            nearest, _ = tree.query(x[alone])
            out[alone] = -0.5 * (nearest / bandwidth) ** 2 - log_norm
        return out

    return log_density


def energy_checks(
    store: CheckpointStore, datasets: list[str], heldout: int, spacing: float = GRID_SPACING
) -> list[dict]:
    out = []
    for d in datasets:
        energy = store.load_ready(MODELS["energy"].format(d=d))
        plain = store.load_ready(MODELS["plain"].format(d=d))
        points = get_dataset(d, heldout, HELDOUT_SEED)
        box = data_box(get_dataset(d))
        row = {"dataset": d}
        for t in CHECK_LEVELS:
            norm = grid_normalizer(energy.network, energy.schedule, *box, t=t, spacing=spacing)
            # the midpoint rule's own error: the same normaliser on a grid twice as fine
            fine = grid_normalizer(energy.network, energy.schedule, *box, t=t, spacing=spacing / 2)
            x = torch.from_numpy(points)
            grid = energy_log_density(energy.network, energy.schedule, x, norm).numpy()
            ode = model_log_likelihood(energy, points, at_level=t)
            diff = ode.log_density[ode.finite] - grid[ode.finite]
            row[f"t{t}"] = {
                "sigma": float(energy.schedule.sqrt_one_minus_alpha_bar[t]),
                "grid_minus_ode_mean": float(-diff.mean()),
                # normaliser-free: how far the two log-densities differ beyond a constant
                "grid_minus_ode_sd": float(diff.std()),
                "grid_minus_ode_max": float(np.abs(diff).max()),
                "log_z": norm.log_z,
                "log_z_fine_minus_coarse": fine.log_z - norm.log_z,
                "grid_seconds": norm.seconds,
                "ode_seconds": ode.seconds,
            }
        nll = {}
        for kind, model in (("energy", energy), ("plain", plain)):
            ll = model_log_likelihood(model, points)
            nll[kind] = bits_per_dim(ll.log_density[ll.finite])
        row.update(
            {
                "kl_energy": energy.manifest["kl_bits"],
                "kl_plain": plain.manifest["kl_bits"],
                "nll_energy": nll["energy"],
                "nll_plain": nll["plain"],
                "train_seconds": energy.manifest["train_seconds"],
                "train_seconds_plain": plain.manifest["train_seconds"],
            }
        )
        out.append(row)
    return out


def required_models(datasets: list[str]) -> list[str]:
    return [m.format(d=d) for d in datasets for m in MODELS.values()]


def run_cells(
    store: CheckpointStore,
    datasets: list[str],
    n: int,
    seed: int,
    steps: int | None = None,
    exact_check: int = EXACT_CHECK,
):
    rows, samples = [], {}
    bar = tqdm(total=len(datasets) * len(CELLS), desc="what works", unit="cell")
    for d in datasets:
        models = {k: store.load_ready(v.format(d=d)) for k, v in MODELS.items()}
        ruler = data_log_density(d)
        for kind, variant, gradient, scale, sampler in CELLS:
            bar.set_postfix_str(f"{d} {kind} {variant} {gradient or ''} {scale}")
            model = models[kind]
            result = sample(
                model,
                SampleSpec(
                    variant=variant,
                    scale=scale,
                    n=n,
                    seed=seed,
                    steps=steps,
                    sampler=sampler,
                    gradient=gradient,
                ),
            )
            ev = score(model, result)
            data_log_p = ruler(result.samples)
            row = Row(
                d,
                model.name,
                variant,
                result.gradient or "",
                result.scale,
                sampler,
                ev.kl_bits,
                ev.precision,
                ev.recall,
                float(np.mean(data_log_p)),
                float(np.median(data_log_p)),
                ev.nonfinite,
                ev.seconds_per_sample,
            )
            if result.log_p is not None:
                target = result.target_log_p
                row.target_log_p = target
                row.tracked_within = float(np.mean(np.abs(result.log_p - target) < 0.5))
                subset = result.samples[:exact_check]
                exact = model_log_likelihood(model, subset, EXACT_TOL, EXACT_TOL).log_density
                row.exact_within = float(np.mean(np.abs(exact - target) < 0.5))
                row.exact_minus_tracked_sd = float(np.nanstd(exact - result.log_p[:exact_check]))
                samples[d, kind, "targets", scale] = (target, exact)
            rows.append(row)
            samples[d, kind, variant, gradient, scale] = result.samples
            bar.update(1)
    bar.close()
    return rows, samples


def write_cells(rows: list[Row], out: Path) -> None:
    with open(out / "what_works.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    lines = [
        "| dataset | model | variant | gradient | scale | sampler | KL bits | precision | recall "
        "| median log p_data | non-finite | s/sample | target | within 0.5 (tracked) "
        "| within 0.5 (exact) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        density = r.variant == "density"
        lines.append(
            f"| {r.dataset} | {r.model} | {r.variant} | {r.gradient} | {r.scale:g} | {r.sampler} "
            f"| {r.kl_bits:.3f} | {r.precision:.3f} | {r.recall:.3f} | {r.median_log_p:.2f} "
            f"| {r.nonfinite} | {r.seconds_per_sample:.1e} "
            + (
                f"| {r.target_log_p:.2f} | {r.tracked_within:.2f} | {r.exact_within:.2f} |"
                if density
                else "| | | |"
            )
        )
    (out / "what_works.md").write_text("\n".join(lines) + "\n")


def write_checks(checks: list[dict], out: Path) -> None:
    (out / "energy.json").write_text(json.dumps(checks, indent=1) + "\n")
    lines = [
        "| dataset | KL energy | KL plain | NLL energy | NLL plain | train s energy "
        "| train s plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        lines.append(
            f"| {c['dataset']} | {c['kl_energy']:.3f} | {c['kl_plain']:.3f} "
            f"| {c['nll_energy']:.3f} | {c['nll_plain']:.3f} | {c['train_seconds']:.0f} "
            f"| {c['train_seconds_plain']:.0f} |"
        )
    lines += [
        "",
        "| dataset | t | sigma_t | log Z (grid) | 2x finer grid - grid | grid - ODE: mean "
        "| sd | max abs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        for t in CHECK_LEVELS:
            v = c[f"t{t}"]
            lines.append(
                f"| {c['dataset']} | {t} | {v['sigma']:.3f} | {v['log_z']:.2f} "
                f"| {v['log_z_fine_minus_coarse']:.1e} | {v['grid_minus_ode_mean']:.3f} "
                f"| {v['grid_minus_ode_sd']:.3f} | {v['grid_minus_ode_max']:.3f} |"
            )
    (out / "energy.md").write_text("\n".join(lines) + "\n")


def figures(rows: list[Row], samples: dict, datasets: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in CELLS if c[0] == "energy"] + [("plain", "fixed", "score", 0.02, "ddpm")]
    fig, axes = plt.subplots(
        len(datasets), len(shown), figsize=(2.2 * len(shown), 2.2 * len(datasets))
    )
    axes = np.atleast_2d(axes)
    for i, d in enumerate(datasets):
        for j, (kind, variant, gradient, scale, _) in enumerate(shown):
            xs = samples[d, kind, variant, gradient, scale]
            xs = xs[np.isfinite(xs).all(axis=1)][:3000]
            ax = axes[i, j]
            ax.scatter(xs[:, 0], xs[:, 1], s=0.3, alpha=0.4)
            ax.set_xlim(-5, 5), ax.set_ylim(-5, 5), ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                label = variant if scale is None else f"{variant} {scale:g}"
                ax.set_title(f"{kind}: {label}", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "what_works_samples.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3))
    for ax, d in zip(np.atleast_1d(axes), datasets, strict=True):
        pts = [r for r in rows if r.dataset == d and r.model.endswith("plain-improved")]
        pts = [r for r in pts if r.variant in ("baseline", "fixed")]
        pts.sort(key=lambda r: r.scale)
        ax.plot([r.scale for r in pts], [r.precision for r in pts], "o-", label="precision")
        ax.plot([r.scale for r in pts], [r.recall for r in pts], "s-", label="recall")
        ax.set_title(f"{d}: fixed, score gradient", fontsize=9)
        ax.set_xlabel("scale (gamma)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "coverage_vs_scale.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3))
    for ax, d in zip(np.atleast_1d(axes), datasets, strict=True):
        for kind, marker in (("plain", "o"), ("energy", "s")):
            for i, q in enumerate(QUANTILES):
                target, exact = samples[d, kind, "targets", q]
                label = f"{kind} model" if i == 0 else None
                ax.scatter(
                    np.full(len(exact), target), exact, s=6, marker=marker, alpha=0.5, label=label
                )
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"{d}: exact log p vs target", fontsize=9)
        ax.set_xlabel("requested log p (nats)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "density_targets.png", dpi=110)
    plt.close(fig)


def what_works(
    out: str | Path = "results",
    n: int = 2_000,
    seed: int = 0,
    store: str | Path = "model_store",
    datasets: list[str] | None = None,
    heldout: int = 300,
    checks: bool = True,
    steps: int | None = None,
    exact_check: int = EXACT_CHECK,
    cells: bool = True,
    spacing: float = GRID_SPACING,
) -> list[Row]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = datasets or sorted(PAPER_DATASETS)
    ckpts = CheckpointStore(store)
    start = time.perf_counter()
    (out / "score_rescaling.md").write_text(score_rescaling.render(score_rescaling.rows()))
    if checks:  # written at once: the cells take far longer
        write_checks(energy_checks(ckpts, datasets, heldout, spacing), out)
    rows = []
    if cells:
        rows, samples = run_cells(ckpts, datasets, n, seed, steps, exact_check)
        write_cells(rows, out)
        figures(rows, samples, datasets, out)
    (out / "what_works_machine.txt").write_text(
        f"{describe()}\nn={n} seed={seed} heldout={heldout} "
        f"wall={time.perf_counter() - start:.0f}s\n"
    )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results")
    p.add_argument("--n", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout", type=int, default=300)
    p.add_argument("--datasets", nargs="+", default=None)
    p.add_argument("--no-checks", action="store_true", help="skip the energy-model checks")
    p.add_argument("--no-cells", action="store_true", help="only the energy-model checks")
    p.add_argument("--exact-check", type=int, default=EXACT_CHECK)
    args = p.parse_args()
    what_works(
        args.out,
        args.n,
        args.seed,
        datasets=args.datasets,
        heldout=args.heldout,
        checks=not args.no_checks,
        exact_check=args.exact_check,
        cells=not args.no_cells,
    )
    if not args.no_cells:
        print((Path(args.out) / "what_works.md").read_text())
    if not args.no_checks:
        print((Path(args.out) / "energy.md").read_text())


if __name__ == "__main__":
    main()
