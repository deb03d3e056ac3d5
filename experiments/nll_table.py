"""Held-out NLL of every model in the store (probability-flow ODE, exact divergence).

`python -m experiments.nll_table --out results/nll` writes nll.csv and nll.md: bits per
dimension of fresh data points (the dataset's generator with a seed no training run uses).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from experiments.machine import describe
from service.core.data import get_dataset
from service.core.likelihood import HELDOUT_SEED, bits_per_dim, model_log_likelihood
from service.core.store import CheckpointStore


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="results/nll")
    p.add_argument("--store", default="model_store")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--tol", type=float, default=1e-5)
    args = p.parse_args()
    torch.set_num_threads(1)  # the solver's batches are small: one thread is fastest here
    store = CheckpointStore(args.store)
    rows = []
    for name in store.names():
        model = store.load_ready(name)
        points = get_dataset(model.dataset, args.n, HELDOUT_SEED)
        result = model_log_likelihood(model, points, rtol=args.tol, atol=args.tol)
        finite = result.log_density[result.finite]
        rows.append(
            {
                "model": name,
                "dataset": model.dataset,
                "objective": model.objective,
                "recipe": model.recipe,
                "nll_bits_per_dim": round(float(bits_per_dim(finite)), 4),
                "sem": round(float(np.std(finite) / np.sqrt(len(finite)) / (2 * np.log(2))), 4),
                "flagged": int((~result.finite).sum()),
                "evaluations": result.nfev,
                "seconds": round(result.seconds, 1),
            }
        )
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "nll.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| model | NLL (bits/dim) | +- s.e. | flagged | NFE | seconds |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['nll_bits_per_dim']:.3f} | {r['sem']:.3f} | {r['flagged']} | "
        f"{r['evaluations']} | {r['seconds']} |"
        for r in rows
    ]
    (out / "nll.md").write_text("\n".join(lines) + "\n\n" + describe() + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
