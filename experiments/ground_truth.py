"""Guidance and samplers against the ground truth: the oracles beside the learned models.

`python -m experiments.ground_truth` prints its rows as JSON (docs/RESULTS.md "Ground truth"):
- each sampler's error with exact scores (the oracle: discretisation alone) against the learned
  improved model, by NFE: the samples' exact mean log p_data minus the data's, and
  KL(samples || data);
- Density Guidance on the oracle: the fraction of samples whose exact log-density lies within
  0.5 nats of the requested level, at q = 0.1, 0.5, 0.9;
- cfg with exact scores and with the learned model against its tilted target;
- the paper's five variants with the exact grad log p_t.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from service.core.evaluation import score
from service.core.exact.datasets import exact_density
from service.core.exact.metrics import exact_scores, knn_entropy, log_p_data
from service.core.likelihood import model_log_likelihood
from service.core.offline import sample
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore

SAMPLERS = ("ddpm", "ddim", "heun", "dpmpp_2m")


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
                        "median_gap": ex.median_log_p_data - ex.data_median_log_p,
                        "off_data": ex.off_data_fraction,
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


def learned_density_rows(store: CheckpointStore, dataset: str, n: int, steps: int) -> list[dict]:
    """Density Guidance on the learned model, its misses split: integration error (the tracked
    log-density against the model's exact ODE likelihood of the same end point) and model error
    (that likelihood against the exact log p_0), all in x at the first noise level (nats)."""
    model = store.load_ready(f"{dataset}-plain-improved")
    a0, s0 = (float(v) for v in levels_at_zero(model))
    jac = math.log1p((s0 / a0) ** 2)  # log p_x = log p_y + log(1 + sigma0^2) in 2D
    rows = []
    for q in (0.1, 0.5, 0.9):
        result = sample(model, SampleSpec("density", scale=q, n=n, seed=0, steps=steps))
        target = result.target_log_p + jac
        tracked = result.log_p + jac
        ode = model_log_likelihood(model, result.samples, at_level=0).log_density
        exact = (
            exact_density(dataset)
            .log_p(torch.tensor(result.samples, dtype=torch.float64), a0, s0)
            .numpy()
        )
        rows.append(
            {
                "dataset": dataset,
                "q": q,
                "target": target,
                "within_0_5_nats_exact": float(np.mean(np.abs(exact - target) <= 0.5)),
                "within_0_5_nats_model": float(np.mean(np.abs(ode - target) <= 0.5)),
                "integration_error": float(np.median(np.abs(tracked - ode))),
                "model_error": float(np.median(np.abs(ode - exact))),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def levels_at_zero(model) -> tuple[float, float]:
    ab = float(model.schedule.alpha_bar[0])
    return math.sqrt(ab), math.sqrt(1 - ab)


def tilted_log_density(dataset: str, label: int, w: float, points: np.ndarray, log_z: float):
    """log of p(x | c)^w p(x)^(1 - w) / Z at the data (t = 0), exact up to the grid's Z."""
    density = exact_density(dataset)
    x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    cond = density.log_p(x, 1.0, 0.0, labels=label)
    marginal = density.log_p(x, 1.0, 0.0)
    out = w * cond + (1 - w) * torch.where(torch.isfinite(cond), marginal, 0.0)
    return (out - log_z).numpy()


def tilted_grid(dataset: str, label: int, w: float, half: float = 6.0, count: int = 1200):
    """The tilted target on a grid: log Z and a sampler of exact draws (a cell, then uniform)."""
    cell = 2 * half / count  # cell centres: the boxes' edges fall on cell edges
    g = -half + cell * (np.arange(count) + 0.5)
    xs, ys = np.meshgrid(g, g, indexing="ij")
    grid = np.stack([xs.ravel(), ys.ravel()], 1)
    log_t = tilted_log_density(dataset, label, w, grid, 0.0)
    log_z = float(np.logaddexp.reduce(log_t[np.isfinite(log_t)]) + 2 * math.log(cell))

    def draw(n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        p = np.exp(log_t - log_t[np.isfinite(log_t)].max())
        p = np.where(np.isfinite(p), p, 0.0)
        idx = rng.choice(len(grid), size=n, p=p / p.sum())
        return grid[idx] + rng.uniform(-cell / 2, cell / 2, size=(n, 2))

    return log_z, draw


def cfg_rows(
    store: CheckpointStore, dataset: str, n: int, weights=(1.0, 2.0, 3.0, 5.0)
) -> list[dict]:
    """cfg with exact scores (the oracle) and the learned model, class 1, against the tilted
    target: the samples' mean offset along x from the target's, KL(samples || target) with the
    floor of exact target draws, and E[1 / p(c | x)] under the exact posterior."""
    rows = []
    for w in weights:
        log_z, draw = tilted_grid(dataset, 1, w)
        exact = draw(n, 1)
        floor = abs(-knn_entropy(exact) - tilted_log_density(dataset, 1, w, exact, log_z).mean())
        for which in ("oracle", "conditional"):
            model = store.load_ready(f"{dataset}-{which}-improved")
            x = sample(model, SampleSpec("cfg", scale=w, label=1, n=n, seed=0)).samples
            x = x[np.isfinite(x).all(1)].astype(np.float64)
            log_t = tilted_log_density(dataset, 1, w, x, log_z)
            on = np.isfinite(log_t)
            post = exact_density(dataset).log_posterior(torch.tensor(x), 1.0, 0.0)[:, 1].exp()
            post = post[torch.isfinite(post)].clamp(min=1e-6).numpy()
            rows.append(
                {
                    "dataset": dataset,
                    "model": which,
                    "w": w,
                    "mean_x": float(x[:, 0].mean()),
                    "target_mean_x": float(exact[:, 0].mean()),
                    "on_target_support": float(on.mean()),
                    "kl_to_target_bits": (-knn_entropy(x[on]) - float(log_t[on].mean()))
                    / math.log(2),
                    "floor_bits": floor / math.log(2),
                    "reciprocal_posterior": float(np.mean(1 / post)),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


PAPER_VARIANTS = ("baseline", "fixed", "adaptive", "smoothed", "minimal")


def paper_rows(store: CheckpointStore, dataset: str, n: int) -> list[dict]:
    """The paper's five variants at their default scales with the exact grad log p_t (the
    oracle's `score` gradient): coverage and the exact metrics, against baseline."""
    model = store.load_ready(f"{dataset}-oracle-improved")
    rows = []
    for variant in PAPER_VARIANTS:
        gradient = None if variant == "baseline" else "score"
        ev = score(model, sample(model, SampleSpec(variant, n=n, seed=0, gradient=gradient)))
        ex = ev.exact
        rows.append(
            {
                "dataset": dataset,
                "variant": variant,
                "scale": ev.scale,
                "kl_bits": ev.kl_bits,
                "precision": ev.precision,
                "recall": ev.recall,
                "log_p_gap": None
                if ex.mean_log_p_data is None
                else ex.mean_log_p_data - ex.data_mean_log_p,
                "reverse_kl_bits": ex.reverse_kl_bits,
                "median_gap": ex.median_log_p_data - ex.data_median_log_p,
                "off_data": ex.off_data_fraction,
                "nonfinite": ev.nonfinite,
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
    p.add_argument("--cfg-datasets", default="boxes,gaussians")
    p.add_argument("--paper-datasets", default="moons,dino,line,circle")
    p.add_argument(
        "--skip", default="", help="parts to skip: samplers,density,learned-density,cfg,paper"
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    store = CheckpointStore(args.store)
    steps = tuple(int(s) for s in args.steps.split(","))
    skip = set(args.skip.split(","))
    for dataset in filter(None, args.datasets.split(",")):
        if "samplers" not in skip:
            sampler_rows(store, dataset, args.n, steps)
        if "density" not in skip:
            density_rows(store, dataset, args.density_n, 50)
        if "learned-density" not in skip:
            learned_density_rows(store, dataset, args.density_n, 50)
    if "cfg" not in skip:
        for dataset in filter(None, args.cfg_datasets.split(",")):
            cfg_rows(store, dataset, args.n)
    if "paper" not in skip:
        for dataset in filter(None, args.paper_datasets.split(",")):
            paper_rows(store, dataset, args.n)


if __name__ == "__main__":
    main()
