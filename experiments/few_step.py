"""Few-step sampling: every (sampler, spacing) at 5 to 100 network evaluations on each dataset's
default model, against 100-step DDPM on the same model (docs/RESULTS.md, "Few-step sampling").

`python -m experiments.few_step --out results/few_step` writes grid.csv, grid.md and
grid.png. Each sampler runs at the step count whose NFE is closest to each target without
passing it (Heun: 2 S - 1), from one seed (0; the tuned spacings were searched on seed 1). A
cell meets the bar when its KL(data || samples) is at most 100-step DDPM's plus 0.05 bits or
10% of it, whichever is larger. With `--oracle`, the same cells on each dataset's exact-score
oracle (its discretisation error alone, the tuned spacing borrowed from the learned model) and
on both the exact metrics: KL(samples || data) and the fraction of samples off the data.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from experiments.machine import describe
from service.core.data import PAPER_DATASETS
from service.core.evaluation import evaluate
from service.core.model import ReadyModel
from service.core.samplers import SAMPLERS
from service.core.spacing import SPACINGS, TUNED
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore

NFE_TARGETS = (5, 6, 8, 10, 12, 15, 20, 30, 50, 100)
# the bar: at most 100-step DDPM's KL plus the larger of 0.05 bits and 10% of it
TOLERANCE_BITS, TOLERANCE_FRACTION = 0.05, 0.10


def steps_for(sampler: str, nfe: int) -> int:
    """The most steps whose evaluations do not exceed `nfe`."""
    count = SAMPLERS[sampler].evaluations
    return max(s for s in range(1, nfe + 1) if count(s) <= nfe)


def bar(reference: float) -> float:
    return reference + max(TOLERANCE_BITS, TOLERANCE_FRACTION * abs(reference))


def meets(kl: float, reference: float) -> bool:
    return kl <= bar(reference)


def cell(model: ReadyModel, sampler: str, spacing: str, nfe: int, n: int, seed: int) -> dict:
    steps = steps_for(sampler, nfe)
    spec = SampleSpec(n=n, seed=seed, steps=steps, sampler=sampler, spacing=spacing)
    ev = evaluate(model, spec)
    exact = ev.exact
    return {
        "dataset": model.dataset,
        "model": model.name,
        "sampler": sampler,
        "spacing": spacing,
        "steps": steps,
        "nfe": SAMPLERS[sampler].evaluations(steps),
        "kl_bits": round(ev.kl_bits, 4),
        "exact_kl_bits": None if exact.reverse_kl_bits is None else round(exact.reverse_kl_bits, 4),
        "off_data": exact.off_data_fraction,
        "nonfinite": ev.nonfinite,
        "seconds": round(ev.sampling_seconds, 3),
    }


def models(store: CheckpointStore, dataset: str, oracle: bool) -> list[ReadyModel]:
    learned = store.load_ready(f"{dataset}-plain-improved")
    if not oracle:
        return [learned]
    exact = store.load_ready(f"{dataset}-oracle-improved")
    if learned.tuned_spacing is not None:  # the learned model's timesteps, on the exact score
        table = replace(learned.tuned_spacing, model_id=exact.id)
        exact = replace(exact, tuned_spacing=table, plans={}, _respaced={})
    return [learned, exact]


ORACLE_NFE = (5, 8, 10, 20, 50)  # the oracle's exact score costs 0.1-2.4x the MLP's: fewer


def sweep(store: str, datasets: list[str], n: int, seed: int, oracle: bool) -> list[dict]:
    s = CheckpointStore(store)
    rows = []
    for d in datasets:
        for m in models(s, d, oracle):
            spacings = [sp for sp in SPACINGS if sp != TUNED or m.tuned_spacing is not None]
            targets = ORACLE_NFE if m.is_oracle else NFE_TARGETS
            jobs = [(smp, sp, nfe) for smp in SAMPLERS for sp in spacings for nfe in targets]
            reference = cell(m, "ddpm", "uniform", 100, n, seed)
            rows.append({**reference, "spacing": "reference"})
            for smp, sp, nfe in tqdm(jobs, desc=m.name):
                rows.append(cell(m, smp, sp, nfe, n, seed))
    return rows


def best_within(rows: list[dict], model: str, limit: int) -> dict | None:
    """The cell with the fewest NFE (then the lowest KL) that meets the bar, at most `limit`."""
    ref = next(r for r in rows if r["model"] == model and r["spacing"] == "reference")
    ok = [
        r
        for r in rows
        if r["model"] == model and r["spacing"] != "reference" and r["nfe"] <= limit
        if meets(r["kl_bits"], ref["kl_bits"])
    ]
    return min(ok, key=lambda r: (r["nfe"], r["kl_bits"])) if ok else None


def report(rows: list[dict]) -> str:
    lines = ["| model | 100-step DDPM | bar | best at <= 10 NFE | fewest NFE that meets the bar |"]
    lines += ["|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        ref = next(r for r in rows if r["model"] == model and r["spacing"] == "reference")
        limit = bar(ref["kl_bits"])
        mine = [r for r in rows if r["model"] == model and r["spacing"] != "reference"]
        best10 = min((r for r in mine if r["nfe"] <= 10), key=lambda r: r["kl_bits"])
        first = best_within(rows, model, 100)
        shown = "-" if first is None else f"{first['sampler']}/{first['spacing']} at {first['nfe']}"
        b10 = f"{best10['sampler']}/{best10['spacing']} at {best10['nfe']}: {best10['kl_bits']:.3f}"
        verdict = "met" if meets(best10["kl_bits"], ref["kl_bits"]) else "missed"
        lines += [f"| {model} | {ref['kl_bits']:.3f} | {limit:.3f} | {b10} ({verdict}) | {shown} |"]
    lines += table(rows, "kl_bits", "KL(data || samples), k-NN, bits, by NFE", oracle=False)
    if any(r["exact_kl_bits"] is not None for r in rows):
        title = "Exact KL(samples || data), bits, by NFE (the oracles: their discretisation error)"
        lines += table(rows, "exact_kl_bits", title, oracle=None)
    return "\n".join(lines)


def table(rows: list[dict], key: str, title: str, oracle: bool | None) -> list[str]:
    """One line per (model, sampler, spacing), one column per NFE target (a sampler runs at
    the most NFE it can without passing it: Heun's 9 under 10); `oracle` None: both kinds of
    model, the oracles' columns blank where they did not run."""
    chosen = [r for r in rows if oracle is None or ("oracle" in r["model"]) == oracle]
    lines = ["", f"{title}:", ""]
    lines += ["| model | sampler | spacing | " + " | ".join(map(str, NFE_TARGETS)) + " |"]
    lines += ["|---" * (len(NFE_TARGETS) + 3) + "|"]
    for model in dict.fromkeys(r["model"] for r in chosen):
        targets = ORACLE_NFE if "oracle" in model else NFE_TARGETS
        for smp in SAMPLERS:
            for sp in SPACINGS:
                by_nfe = {
                    r["nfe"]: r[key]
                    for r in chosen
                    if r["model"] == model and r["sampler"] == smp and r["spacing"] == sp
                }
                if not by_nfe:
                    continue
                shown = []
                for t in NFE_TARGETS:
                    value = by_nfe.get(SAMPLERS[smp].evaluations(steps_for(smp, t)))
                    shown.append("" if t not in targets or value is None else f"{value:.3f}")
                lines += [f"| {model} | {smp} | {sp} | " + " | ".join(shown) + " |"]
    return lines


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_names = list(dict.fromkeys(r["model"] for r in rows))
    spacings = [sp for sp in SPACINGS if any(r["spacing"] == sp for r in rows)]
    fig, axes = plt.subplots(
        len(model_names),
        len(spacings),
        figsize=(3.6 * len(spacings), 2.9 * len(model_names)),
        squeeze=False,
        sharex=True,
    )
    for i, model in enumerate(model_names):
        ref = next(r for r in rows if r["model"] == model and r["spacing"] == "reference")
        limit = bar(ref["kl_bits"])
        for j, sp in enumerate(spacings):
            ax = axes[i][j]
            for smp in SAMPLERS:
                cells = sorted(
                    (
                        r
                        for r in rows
                        if r["model"] == model and r["sampler"] == smp and r["spacing"] == sp
                    ),
                    key=lambda r: r["nfe"],
                )
                kl = [r["kl_bits"] if math.isfinite(r["kl_bits"]) else math.nan for r in cells]
                ax.plot([r["nfe"] for r in cells], kl, marker=".", label=smp)
            ax.axhline(limit, color="k", lw=0.8, ls="--")
            ax.axvline(10, color="grey", lw=0.6, ls=":")
            # symlog: the estimator's floor is slightly negative (about -0.08..+0.03 bits)
            ax.set_yscale("symlog", linthresh=0.1)
            ax.set(xscale="log", title=f"{model}: {sp}", ylim=(-0.2, 12))
            ax.grid(alpha=0.3)
        axes[i][0].set_ylabel("KL(data || samples), bits")
    for ax in axes[-1]:
        ax.set_xlabel("network evaluations (NFE)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_rows(path: Path) -> list[dict]:
    """A grid.csv back as the rows `sweep` returned (numbers as numbers, blanks as None)."""
    ints, floats = (
        {"steps", "nfe", "nonfinite"},
        {"kl_bits", "exact_kl_bits", "off_data", "seconds"},
    )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ints & r.keys():
            r[k] = int(r[k])
        for k in floats & r.keys():
            r[k] = None if r[k] in ("", "None") else float(r[k])
    return rows


def write(rows: list[dict], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grid.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = report(rows)
    (out / "grid.md").write_text(text + "\n\n" + describe() + "\n")
    figure(rows, out / "grid.png")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="results/few_step")
    p.add_argument("--store", default="model_store")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--datasets", nargs="+", default=sorted(PAPER_DATASETS))
    p.add_argument("--oracle", action="store_true", help="also each dataset's oracle")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="no sampling: join these grid.csv files (one per process) into --out",
    )
    args = p.parse_args()
    if args.merge:
        rows = [r for path in args.merge for r in read_rows(path)]
    else:
        rows = sweep(args.store, args.datasets, args.n, args.seed, args.oracle)
    print(write(rows, Path(args.out)))


if __name__ == "__main__":
    main()
