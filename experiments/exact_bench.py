"""`dgs bench`'s exact section: the oracle against the learned network, and the exact metrics
against drawing the samples, side by side in one run.

- Per dataset: one eps evaluation of n = 10,000 rows by the oracle (`<d>-oracle-improved`)
  and by the learned MLP (`<d>-plain-improved`, or the conditional one on boxes and gaussians),
  at every timestep of the 100-step schedule in turn, alternating which goes first each round;
  the best of `rounds`. Target: oracle / MLP <= 2.
- Per dataset: `exact_scores` of 10,000 samples against the 100-step DDPM run that drew them
  (the MLP's). Target: metrics / drawing < 1.
"""

from __future__ import annotations

import time

import torch

from service.core.data import DATASETS, LABELLED
from service.core.exact.metrics import exact_scores
from service.core.offline import sample
from service.core.passes import model_eps
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore

N = 10_000
EPS_TARGET = 2.0
METRICS_TARGET = 1.0


def learned_name(dataset: str) -> str:
    objective = "conditional" if dataset in LABELLED and dataset != "moons" else "plain"
    return f"{dataset}-{objective}-improved"


def _eps_seconds(model, x: torch.Tensor, timesteps: range) -> float:
    start = time.perf_counter()
    for t in timesteps:
        model_eps(model, x, torch.full((len(x),), t, device=x.device), False, t_uniform=t)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


def exact_cost(
    store: CheckpointStore,
    device: torch.device,
    n: int = N,
    rounds: int = 3,
    steps: int = 100,
    bar=None,
) -> dict:
    rows = []
    for dataset in sorted(DATASETS):
        oracle = store.load_ready(f"{dataset}-oracle-improved", device)
        learned = store.load_ready(learned_name(dataset), device)
        x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0)).to(device)
        timesteps = range(0, oracle.schedule.num_timesteps, max(1, 100 // steps))
        times: dict[str, list[float]] = {"oracle": [], "learned": []}
        for r in range(rounds):
            order = [("oracle", oracle), ("learned", learned)]
            for name, model in order if r % 2 == 0 else order[::-1]:
                times[name].append(_eps_seconds(model, x, timesteps))
        drawn = sample(learned, SampleSpec("baseline", n=n, seed=0, steps=steps))
        start = time.perf_counter()
        exact_scores(dataset, drawn.samples)
        first = time.perf_counter() - start  # caches the data's own score and the floors
        start = time.perf_counter()
        exact_scores(dataset, drawn.samples)
        metrics = time.perf_counter() - start
        rows.append(
            {
                "dataset": dataset,
                "oracle_s": min(times["oracle"]),
                "learned_s": min(times["learned"]),
                "ratio": min(times["oracle"]) / min(times["learned"]),
                "spread_oracle": times["oracle"],
                "spread_learned": times["learned"],
                "metrics_s": metrics,
                "metrics_first_s": first,
                "drawing_s": drawn.seconds,
                "metrics_ratio": metrics / drawn.seconds,
            }
        )
        if bar is not None:
            bar.update(1)
    return {
        "n": n,
        "rounds": rounds,
        "steps": len(timesteps),
        "rows": rows,
        "eps_target": EPS_TARGET,
        "metrics_target": METRICS_TARGET,
    }


def render(report: dict) -> list[str]:
    lines = [
        "## The oracle's eps and the exact metrics",
        "",
        f"n = {report['n']:,} rows; eps at each of {report['steps']} timesteps in turn, the best "
        f"of {report['rounds']} rounds (which model goes first alternating); the metrics of "
        "10,000 samples (after their first call, which caches the data's own score and the "
        "floors) against the 100-step DDPM run that drew them.",
        "",
        "| dataset | oracle s | MLP s | oracle / MLP | rounds oracle | rounds MLP "
        "| metrics s | first call s | drawing s | metrics / drawing |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['dataset']} | {r['oracle_s']:.3f} | {r['learned_s']:.3f} | {r['ratio']:.2f} "
            f"| {', '.join(f'{x:.3f}' for x in r['spread_oracle'])} "
            f"| {', '.join(f'{x:.3f}' for x in r['spread_learned'])} | {r['metrics_s']:.3f} "
            f"| {r['metrics_first_s']:.3f} | {r['drawing_s']:.3f} | {r['metrics_ratio']:.2f} |"
        )
    eps = [r for r in report["rows"] if r["ratio"] > report["eps_target"]]
    met = [r for r in report["rows"] if r["metrics_ratio"] >= report["metrics_target"]]
    lines += [
        "",
        f"- Target oracle / MLP <= {report['eps_target']:g}: "
        + (
            "met on every dataset."
            if not eps
            else "**missed** on "
            + ", ".join(f"{r['dataset']} ({r['ratio']:.2f})" for r in eps)
            + "."
        ),
        f"- Target metrics / drawing < {report['metrics_target']:g}: "
        + (
            "met on every dataset."
            if not met
            else "**missed** on "
            + ", ".join(f"{r['dataset']} ({r['metrics_ratio']:.2f})" for r in met)
            + "."
        ),
        "",
    ]
    return lines
