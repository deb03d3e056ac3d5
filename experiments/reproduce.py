"""`dgs reproduce`: the paper's Table 1 grid, plus the row it lacks, with figures.

For each dataset: baseline on the plain model (the paper's Baseline), baseline on the density
model (separates the training failure from the guidance), and fixed, adaptive, smoothed,
minimal on the density model, at default scales. Every cell is sampled and scored by
`core.evaluation.evaluate`, the code behind `POST /evaluate`. Then a guidance-scale sweep, and
the second table, "what works" (experiments/what_works.py): guidance with consistent densities.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from experiments import figures as fig
from experiments import guidance_sweep as gs
from experiments import guider_comparison
from experiments import what_works as ww
from experiments.machine import describe
from experiments.paper import BASELINE_KL, GRID, paper_cell
from service.core.data import PAPER_DATASETS
from service.core.evaluation import Evaluation, evaluate, score
from service.core.model import ReadyModel
from service.core.offline import sample
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore

SWEEP_VARIANTS = ("fixed", "adaptive")
SWEEP_SCALES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class Cell:
    dataset: str
    objective: str
    variant: str
    scale: float
    model: str
    kl_bits: float
    nonfinite_fraction: float
    batch_seconds: float
    seconds_per_sample: float
    train_minutes: float
    eval_loss: float
    paper_kl: str
    paper_time_s: str
    paper_train_min: str
    paper_eval_loss: str
    # against the exact density: the samples' mean log p_data minus the data's own (nats), and
    # KL(samples || data) in bits (over the samples on the support; line: with its fraction)
    exact_log_p_gap: float = math.nan
    exact_reverse_kl_bits: float = math.nan
    exact_reverse_kl_floor_bits: float = math.nan
    support_fraction: float = math.nan


def make_cell(model: ReadyModel, ev: Evaluation) -> Cell:
    m = model.manifest
    paper = paper_cell(model.dataset, model.objective, ev.variant)
    return Cell(
        dataset=model.dataset,
        objective=model.objective,
        variant=ev.variant,
        scale=ev.scale,
        model=model.name,
        kl_bits=ev.kl_bits,
        nonfinite_fraction=ev.nonfinite_fraction,
        batch_seconds=ev.sampling_seconds,
        seconds_per_sample=ev.seconds_per_sample,
        train_minutes=m["train_seconds"] / 60,
        eval_loss=m["eval_loss"],
        paper_kl=paper["kl"],
        paper_time_s=paper["time_s"],
        paper_train_min=paper["train_min"],
        paper_eval_loss=paper["eval_loss"],
        **exact_columns(ev),
    )


def exact_columns(ev: Evaluation) -> dict:
    x = ev.exact
    if x is None:
        return {}
    nan = math.nan
    return {
        "exact_log_p_gap": nan
        if x.mean_log_p_data is None
        else x.mean_log_p_data - x.data_mean_log_p,
        "exact_reverse_kl_bits": nan if x.reverse_kl_bits is None else x.reverse_kl_bits,
        "exact_reverse_kl_floor_bits": nan
        if x.reverse_kl_floor_bits is None
        else x.reverse_kl_floor_bits,
        "support_fraction": nan if x.support_fraction is None else x.support_fraction,
    }


def load_models(store: CheckpointStore, datasets: list[str], recipe: str) -> dict:
    """(dataset, objective) -> ReadyModel for the given recipe ('paper' by default)."""
    models = {}
    for dataset in datasets:
        for objective in ("plain", "density"):
            name = (
                f"{dataset}-{objective}"
                if recipe == "paper"
                else (f"{dataset}-{objective}-{recipe}")
            )
            models[dataset, objective] = store.load_ready(name)
    return models


def write_table(cells: list[Cell], out: Path) -> None:
    with open(out / "table1.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(cells[0])))
        writer.writeheader()
        writer.writerows(asdict(c) for c in cells)
    lines = [
        "| dataset | model | variant | scale | KL (bits) | paper KL | non-finite | batch s "
        "| s / sample | paper s | train min | paper train min | eval loss | paper eval loss "
        "| exact log p - data's | KL(samples \\|\\| data) (floor) | on support |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        kl = "n/a" if math.isnan(c.kl_bits) else f"{c.kl_bits:.3f}"
        lines.append(
            f"| {c.dataset} | {c.objective} | {c.variant} | {c.scale:g} | {kl} | {c.paper_kl} "
            f"| {c.nonfinite_fraction:.3f} | {c.batch_seconds:.2f} | {c.seconds_per_sample:.2e} "
            f"| {c.paper_time_s} | {c.train_minutes:.1f} | {c.paper_train_min} "
            f"| {c.eval_loss:.3f} | {c.paper_eval_loss} | {c.exact_log_p_gap:.3f} "
            f"| {c.exact_reverse_kl_bits:.3f} ({c.exact_reverse_kl_floor_bits:.3f}) "
            f"| {'-' if math.isnan(c.support_fraction) else f'{c.support_fraction:.3f}'} |"
        )
    (out / "table1.md").write_text("\n".join(lines) + "\n")


def reproduce(
    out: str | Path = "results",
    n: int = 10_000,
    sweep_n: int = 2_000,
    seed: int = 0,
    store: str | Path = "model_store",
    datasets: list[str] | None = None,
    recipe: str = "paper",
    retrain: bool = False,
    figures: bool = True,
    what_works_n: int = 2_000,
    what_works_steps: int | None = None,
    guidance_sweep_n: int = 2_000,
    comparison_n: int = 2_000,
) -> list[Cell]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = datasets or sorted(PAPER_DATASETS)
    if retrain:
        store = retrain_models(out / "model_store", datasets, recipe)
    ckpts = CheckpointStore(store)
    models = load_models(ckpts, datasets, recipe)
    # the guided variants over scales, and both baselines at the same n for reference
    sweep = [(d, v, s) for d in datasets for v in SWEEP_VARIANTS for s in SWEEP_SCALES]
    sweep += [(d, b, 0.0) for d in datasets for b in ("baseline-plain", "baseline-density")]
    bar = tqdm(total=len(datasets) * len(GRID) + len(sweep), desc="reproduce", unit="run")
    cells, samples = [], {}
    for dataset in datasets:
        for objective, variant in GRID:
            bar.set_postfix_str(f"{dataset} {objective}/{variant}")
            model = models[dataset, objective]
            result = sample(model, SampleSpec(variant=variant, scale=None, n=n, seed=seed))
            cells.append(make_cell(model, score(model, result)))
            samples[dataset, objective, variant] = result.samples
            bar.update(1)
    sweep_rows = []
    for dataset, variant, scale in sweep:
        bar.set_postfix_str(f"sweep {dataset} {variant} s={scale:g}")
        model = models[dataset, "plain" if variant == "baseline-plain" else "density"]
        ev = evaluate(
            model, SampleSpec(variant=variant.split("-")[0], scale=scale, n=sweep_n, seed=seed)
        )
        sweep_rows.append(
            {
                "dataset": dataset,
                "variant": variant,
                "scale": scale,
                "kl_bits": ev.kl_bits,
                "nonfinite_fraction": ev.nonfinite_fraction,
            }
        )
        bar.update(1)
    bar.close()
    write_table(cells, out)
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(sweep_rows[0]))
        writer.writeheader()
        writer.writerows(sweep_rows)
    (out / "machine.txt").write_text(describe() + "\n")
    improved = compare_recipes(ckpts, datasets, cells, samples, n, seed, out)
    if figures:
        if improved:
            fig.recipe_samples(samples, improved, datasets, out / "recipes.png")
        fig.samples_grid(samples, datasets, out / "samples.png")
        fig.kl_bars(cells, out / "kl_bars.png")
        fig.loss_curves(
            {d: (models[d, "plain"], models[d, "density"]) for d in datasets},
            ckpts,
            out / "loss_curves.png",
        )
        fig.scale_sweep(sweep_rows, out / "scale_sweep.png")
    if what_works_n:
        second_table(ckpts, datasets, what_works_n, seed, what_works_steps, out)
    if guidance_sweep_n:  # the labelled datasets' conditional models, if shipped
        gs.sweep(out, ckpts, guidance_sweep_n, seed)
    if comparison_n:  # every guider of the conditional models at matched weights
        guider_comparison.compare(out, ckpts, comparison_n, seed)
    return cells


def second_table(
    store: CheckpointStore, datasets: list[str], n: int, seed: int, steps: int | None, out: Path
) -> None:
    """The "what works" table and figures (experiments/what_works.py), where the store
    has the plain, density and energy models it compares; else a note that says which lack."""
    missing = [m for m in ww.required_models(datasets) if m not in store.names()]
    if missing:
        (out / "what_works.md").write_text(f"Not run: the store lacks {', '.join(missing)}.\n")
        return
    ww.what_works(out, n, seed, store.root, datasets, steps=steps)


IMPROVED = "improved"


def compare_recipes(
    store: CheckpointStore,
    datasets: list[str],
    cells: list[Cell],
    samples: dict,
    n: int,
    seed: int,
    out: Path,
) -> dict:
    """Baseline samples of the improved-recipe plain models beside the paper's, if shipped.

    -> {dataset: samples}; writes recipes.md with both KLs and train times.
    """
    names = {d: f"{d}-plain-{IMPROVED}" for d in datasets}
    if not all(name in store.names() for name in names.values()):
        return {}
    lines = [
        "| dataset | paper recipe KL | improved KL | half the paper's | "
        "paper train min | improved train min |",
        "|---|---|---|---|---|---|",
    ]
    improved = {}
    for d in datasets:
        model = store.load_ready(names[d])
        result = sample(model, SampleSpec(variant="baseline", scale=None, n=n, seed=seed))
        ev = score(model, result)
        improved[d] = result.samples
        paper = next(c for c in cells if c.dataset == d and c.objective == "plain")
        lines.append(
            f"| {d} | {paper.kl_bits:.3f} | {ev.kl_bits:.3f} | {BASELINE_KL[d] / 2:.3f} | "
            f"{paper.train_minutes:.1f} | {model.manifest['train_seconds'] / 60:.1f} |"
        )
    (out / "recipes.md").write_text("\n".join(lines) + "\n")
    return improved


def retrain_models(root: Path, datasets: list[str], recipe: str) -> Path:
    from service.worker.recipes import train_config
    from service.worker.train import train

    for dataset in datasets:
        for objective in ("plain", "density"):
            train(dataset, train_config(recipe, objective), out=root, progress=True)
    return root
