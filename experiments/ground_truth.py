"""Guidance and samplers against the ground truth: the oracles beside the learned models.

`python -m experiments.ground_truth` prints two tables (docs/RESULTS.md "Ground truth"):
- each sampler's error with exact scores (the oracle: discretisation alone) against the learned
  improved model, by NFE: the samples' exact mean log p_data minus the data's, and
  KL(samples || data);
- Density Guidance on the oracle: the fraction of samples whose exact log-density lies within
  0.5 nats of the requested level, at q = 0.1, 0.5, 0.9.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from service.core.exact.metrics import exact_scores, log_p_data
from service.core.offline import sample
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore

SAMPLERS = ("ddpm", "ddim", "heun")


def sampler_rows(
    store: CheckpointStore, dataset: str, n: int, steps: tuple[int, ...]
) -> list[dict]:
    rows = []
    for which in ("oracle", "plain"):
        model = store.load_ready(f"{dataset}-{which}-improved")
        for sampler in SAMPLERS:
            for s in steps:
                result = sample(
                    model, SampleSpec("baseline", n=n, seed=0, steps=s, sampler=sampler)
                )
                ex = exact_scores(dataset, result.samples)
                rows.append(
                    {
                        "dataset": dataset,
                        "model": which,
                        "sampler": sampler,
                        "steps": s,
                        "nfe": result.evaluations,
                        "log_p_gap": ex.mean_log_p_data - ex.data_mean_log_p,
                        "reverse_kl_bits": ex.reverse_kl_bits,
                        "reverse_kl_floor_bits": ex.reverse_kl_floor_bits,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def density_rows(store: CheckpointStore, dataset: str, n: int, steps: int) -> list[dict]:
    model = store.load_ready(f"{dataset}-oracle-improved")
    rows = []
    for q in (0.1, 0.5, 0.9):
        result = sample(model, SampleSpec("density", scale=q, n=n, seed=0, steps=steps))
        exact = log_p_data(dataset, result.samples) + 0.0
        sigma0 = float(model.levels[1][0] / model.levels[0][0])
        # the target is a log-density in y = x sqrt(1 + sigma0^2) at the first noise level
        target = result.target_log_p + math.log1p(sigma0**2)
        within = float(np.mean(np.abs(exact - target) <= 0.5))
        rows.append(
            {
                "dataset": dataset,
                "q": q,
                "target": target,
                "median_log_p": float(np.median(exact)),
                "within_0_5_nats": within,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="model_store")
    p.add_argument("--datasets", default="moons,dino,line,circle")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--steps", default="10,20,50,100")
    p.add_argument("--density-n", type=int, default=500)
    args = p.parse_args()
    torch.set_num_threads(2)
    store = CheckpointStore(args.store)
    steps = tuple(int(s) for s in args.steps.split(","))
    for dataset in args.datasets.split(","):
        sampler_rows(store, dataset, args.n, steps)
        density_rows(store, dataset, args.density_n, 50)


if __name__ == "__main__":
    main()
