"""KL against network evaluations (NFE) for every sampler on each dataset's default model.

`python -m experiments.nfe_sweep --out results/samplers` writes nfe.csv, nfe.md and
nfe.png. Each sampler runs at the step count whose NFE is closest to each target without
passing it (Heun: 2 S - 1), from the same seed; the reference is 100-step DDPM.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from tqdm import tqdm

from experiments.machine import describe
from service.core.data import PAPER_DATASETS
from service.core.evaluation import evaluate
from service.core.samplers import SAMPLERS
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore

NFE_TARGETS = (5, 10, 20, 50, 100)
# the bar of docs/RESULTS.md ("Samplers"): within 10% or 0.05 bits (whichever is larger)
# of 100-step DDPM
TOLERANCE_BITS, TOLERANCE_FRACTION = 0.05, 0.10


def steps_for(sampler: str, nfe: int) -> int:
    """The most steps whose evaluations do not exceed `nfe`."""
    count = SAMPLERS[sampler].evaluations
    steps = max(s for s in range(1, nfe + 1) if count(s) <= nfe)
    return steps


def sweep(store: str, datasets: list[str], n: int, seed: int, recipe: str) -> list[dict]:
    rows = []
    s = CheckpointStore(store)
    jobs = [(d, smp, nfe) for d in datasets for smp in SAMPLERS for nfe in NFE_TARGETS]
    models = {}
    for d, smp, nfe in tqdm(jobs, desc="nfe sweep"):
        name = f"{d}-plain" + ("" if recipe == "paper" else f"-{recipe}")
        model = models.setdefault(name, s.load_ready(name))
        steps = steps_for(smp, nfe)
        ev = evaluate(model, SampleSpec(n=n, seed=seed, steps=steps, sampler=smp))
        rows.append(
            {
                "dataset": d,
                "model": name,
                "sampler": smp,
                "steps": steps,
                "nfe": SAMPLERS[smp].evaluations(steps),
                "kl_bits": round(ev.kl_bits, 4),
                "nonfinite": ev.nonfinite,
                "seconds": round(ev.sampling_seconds, 3),
            }
        )
    return rows


def within(kl: float, reference: float) -> bool:
    return abs(kl - reference) <= max(TOLERANCE_BITS, TOLERANCE_FRACTION * abs(reference))


def report(rows: list[dict]) -> str:
    lines = []
    for d in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == d]
        ref = next(r for r in mine if r["sampler"] == "ddpm" and r["nfe"] == 100)["kl_bits"]
        lines += [f"### {d} ({mine[0]['model']}); 100-step DDPM: {ref:.3f} bits", ""]
        lines += [
            "| sampler | " + " | ".join(f"NFE {t}" for t in NFE_TARGETS) + " | first within |"
        ]
        lines += ["|---" * (len(NFE_TARGETS) + 2) + "|"]
        for smp in SAMPLERS:
            cells = sorted((r for r in mine if r["sampler"] == smp), key=lambda r: r["nfe"])
            first = next((r["nfe"] for r in cells if within(r["kl_bits"], ref)), None)
            shown = [f"{r['kl_bits']:.3f} ({r['nfe']})" for r in cells]
            lines += [f"| {smp} | " + " | ".join(shown) + f" | {first or '-'} |"]
        lines += [""]
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.4), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=True):
        for smp in SAMPLERS:
            cells = sorted(
                (r for r in rows if r["dataset"] == d and r["sampler"] == smp),
                key=lambda r: r["nfe"],
            )
            kl = [r["kl_bits"] if math.isfinite(r["kl_bits"]) else math.nan for r in cells]
            ax.plot([r["nfe"] for r in cells], kl, marker="o", label=smp)
        # symlog: the estimator's floor is slightly negative (about -0.08..+0.03 bits)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set(xscale="log", title=d, xlabel="network evaluations (NFE)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("KL(data || samples), bits")
    axes[0][-1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="results/samplers")
    p.add_argument("--store", default="model_store")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", default="improved")
    p.add_argument("--datasets", nargs="+", default=sorted(PAPER_DATASETS))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = sweep(args.store, args.datasets, args.n, args.seed, args.recipe)
    with open(out / "nfe.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = report(rows)
    (out / "nfe.md").write_text(text + "\n" + describe() + "\n")
    figure(rows, out / "nfe.png")
    print(text)


if __name__ == "__main__":
    main()
