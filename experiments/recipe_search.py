"""The search behind the improved training recipe: candidates trained and scored side by side.

    python -m experiments.recipe_search --trials paper cosine --datasets dino \\
        --seeds 0 --steps 10000 --csv docs/recipe_search.csv

Each trial is the paper's recipe with named overrides of the training, schedule or network
config. Rows (trial, dataset, seed, KL of 10,000 baseline samples, eval loss, train seconds)
are appended to the CSV, so a search can be resumed and every number in docs/RESULTS.md
traced to a row. Choose on one seed; confirm on fresh seeds.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from service.worker.recipes import RECIPES, Recipe
from service.worker.train import train

PAPER = RECIPES["paper"]
TRIALS: dict[str, dict[str, dict]] = {
    "paper": {},
    "improved": {},  # the registered improved recipe, for confirmation on fresh seeds
    "cosine": {"schedule": {"kind": "cosine"}},
    "linear-0.05": {"schedule": {"beta_end": 0.05}},
    "coord100": {"model": {"coord_scale": 100.0}},
    "cosine-coord100": {"schedule": {"kind": "cosine"}, "model": {"coord_scale": 100.0}},
    "cosine-coord50": {"schedule": {"kind": "cosine"}, "model": {"coord_scale": 50.0}},
    "coord200": {"model": {"coord_scale": 200.0}},
    "coord100-long": {
        "model": {"coord_scale": 100.0},
        "train": {"steps": 30_000, "lr": 1e-3, "warmup_steps": 500, "ema_decay": 0.999},
    },
    "logsnr-coord100": {"model": {"coord_scale": 100.0}, "schedule": {"kind": "logsnr"}},
    "logsnr-coord100-long": {
        "model": {"coord_scale": 100.0},
        "schedule": {"kind": "logsnr"},
        "train": {"steps": 30_000, "lr": 1e-3, "warmup_steps": 500, "ema_decay": 0.999},
    },
    "coord100-t200": {
        "model": {"coord_scale": 100.0},
        "schedule": {"num_timesteps": 200},
    },
}
FIELDS = ("trial", "dataset", "seed", "steps", "kl_bits", "eval_loss", "train_seconds", "overrides")


def candidate(name: str, overrides: dict[str, dict]) -> Recipe:
    if name in RECIPES and not overrides:
        return RECIPES[name]  # a registered recipe, as it ships
    return Recipe(
        name,
        f"search trial {name}",
        replace(PAPER.train, recipe=name, **overrides.get("train", {})),
        replace(PAPER.schedule, **overrides.get("schedule", {})),
        replace(PAPER.model, **overrides.get("model", {})),
    )


def run_trial(trial: str, dataset: str, seed: int, steps: int | None) -> dict:
    overrides = TRIALS[trial]
    recipe = candidate(trial, overrides)
    config = replace(recipe.train, objective="plain", seed=seed)
    if steps and "steps" not in overrides.get("train", {}):
        config = replace(config, steps=steps)  # a trial's own length wins over --steps
    with tempfile.TemporaryDirectory() as out:
        m = train(dataset, config, out=out, name="trial", progress=False, recipe=recipe)
    return {
        "trial": trial,
        "dataset": dataset,
        "seed": seed,
        "steps": config.steps,
        "kl_bits": round(m["kl_bits"], 4),
        "eval_loss": round(m["eval_loss"], 4),
        "train_seconds": m["train_seconds"],
        "overrides": json.dumps(overrides),
    }


def summarize(path: str | Path) -> str:
    """Markdown: KL mean, spread (min-max) and train seconds per trial and dataset."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["trial"], r["steps"], r["dataset"]), []).append(r)
    lines = [
        "| trial | steps | dataset | seeds | KL mean (bits) | KL min-max | train s mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for (trial, steps, dataset), rs in sorted(groups.items()):
        kls = [float(r["kl_bits"]) for r in rs]
        secs = [float(r["train_seconds"]) for r in rs if r["train_seconds"]]
        seeds = ",".join(sorted(r["seed"] for r in rs))
        lines.append(
            f"| {trial} | {steps} | {dataset} | {seeds} | {sum(kls) / len(kls):.3f} | "
            f"{min(kls):.3f}-{max(kls):.3f} | {sum(secs) / len(secs):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", action="store_true", help="print the CSV's summary and exit")
    p.add_argument("--trials", nargs="+", choices=sorted(TRIALS))
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--csv", default="docs/recipe_search.csv")
    args = p.parse_args(argv)
    if args.summary:
        print(summarize(args.csv), end="")
        return 0
    if not args.trials or not args.datasets:
        p.error("--trials and --datasets are required")
    path = Path(args.csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for trial in args.trials:
            for dataset in args.datasets:
                for seed in args.seeds:
                    row = run_trial(trial, dataset, seed, args.steps)
                    writer.writerow(row)
                    f.flush()
                    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
