"""Check a device's sampling path: is a request's result independent of its batch, and how long
does a 10,000-sample batch take? `python -m service.experiments.device_check --device cuda`.

A request's first chunk is sampled alone and as the head of larger requests; the rows must be
bit-identical (kernels that round by batch shape break this; see ReadyModel.pad_blocks).
"""

from __future__ import annotations

import argparse

import numpy as np

from service.core.device import DEVICE_CHOICES, pick_device
from service.core.guidance import VARIANTS
from service.core.sampling import CHUNK_ROWS, sample
from service.core.store import CheckpointStore


def batch_invariance(model, sizes=(1000, 10_000, 20_000), seed: int = 3) -> list[dict]:
    rows = []
    for variant in VARIANTS:
        alone = sample(model, variant, n=CHUNK_ROWS, seed=seed).samples
        for n in sizes:
            head = sample(model, variant, n=n, seed=seed).samples[:CHUNK_ROWS]
            rows.append(
                {
                    "variant": variant,
                    "n": n,
                    "identical": bool(np.array_equal(alone, head, equal_nan=True)),
                    "max_abs_diff": float(np.nanmax(np.abs(alone - head))),
                }
            )
    return rows


def batch_seconds(model, n: int = 10_000, repeats: int = 5) -> dict[str, float]:
    out = {}
    for variant in VARIANTS:
        sample(model, variant, n=n, seed=0)  # warm-up
        out[variant] = min(sample(model, variant, n=n, seed=0).seconds for _ in range(repeats))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES))
    parser.add_argument("--model-store", default="model_store")
    parser.add_argument("--model", default="moons-density")
    args = parser.parse_args(argv)
    model = CheckpointStore(args.model_store).load_ready(args.model, pick_device(args.device))
    print(f"{args.model} on {model.device}")
    rows = batch_invariance(model)
    for r in rows:
        verdict = "identical" if r["identical"] else "DIFFERENT"
        print(
            f"{r['variant']:9s} first {CHUNK_ROWS} rows alone vs in n={r['n']}: "
            f"{verdict} (max abs diff {r['max_abs_diff']:.3g})"
        )
    for variant, seconds in batch_seconds(model).items():
        print(f"{variant:9s} 10,000 samples: {seconds:.4f} s (best of 5)")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
