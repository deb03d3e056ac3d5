"""Check a device's sampling path: is a request's result independent of its batch, and how long
does a 10,000-sample batch take? `python -m experiments.device_check --device cuda`.

A request's first chunk is sampled alone and as the head of larger requests; the rows must be
bit-identical (kernels that round by batch shape break this; see ReadyModel.pad_blocks).
"""

from __future__ import annotations

import argparse

import numpy as np

from service.core.device import DEVICE_CHOICES, pick_device
from service.core.guiders import GUIDERS
from service.core.guiders.base import Reference
from service.core.offline import sample
from service.core.spec import SampleSpec
from service.core.step import CHUNK_ROWS
from service.core.store import CheckpointStore


def _runs(model, conditional=None, guide=None):
    """(variant, the model it runs on, its guide): the guiders of class-conditional models on
    the conditional model (class 0; a guide-model guider with its guide), where one is given."""
    for variant, g in GUIDERS.items():
        if not g.conditional_model:
            yield variant, model, None
        elif conditional is not None and (g.reference is not Reference.GUIDE or guide is not None):
            yield variant, conditional, guide if g.reference is Reference.GUIDE else None


def _spec(on, variant: str, n: int, seed: int) -> SampleSpec:
    return SampleSpec(variant, n=n, seed=seed, label=0 if on.num_classes else None)


def batch_invariance(
    model, sizes=(1000, 10_000, 20_000), seed: int = 3, conditional=None, guide=None
) -> list[dict]:
    rows = []
    for variant, on, g in _runs(model, conditional, guide):
        alone = sample(on, _spec(on, variant, CHUNK_ROWS, seed), g).samples
        for n in sizes:
            head = sample(on, _spec(on, variant, n, seed), g).samples[:CHUNK_ROWS]
            rows.append(
                {
                    "variant": variant,
                    "n": n,
                    "identical": bool(np.array_equal(alone, head, equal_nan=True)),
                    "max_abs_diff": float(np.nanmax(np.abs(alone - head))),
                }
            )
    return rows


def batch_seconds(
    model, n: int = 10_000, repeats: int = 5, conditional=None, guide=None
) -> dict[str, float]:
    out = {}
    for variant, on, g in _runs(model, conditional, guide):
        sample(on, _spec(on, variant, n, 0), g)  # warm-up
        times = [sample(on, _spec(on, variant, n, 0), g).seconds for _ in range(repeats)]
        out[variant] = min(times)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES))
    parser.add_argument("--model-store", default="model_store")
    parser.add_argument("--model", default="moons-density")
    parser.add_argument("--conditional-model", default="moons-conditional-improved")
    parser.add_argument("--guide-model", default="moons-conditional-guide")
    args = parser.parse_args(argv)
    store, device = CheckpointStore(args.model_store), pick_device(args.device)
    model = store.load_ready(args.model, device)
    conditional = store.load_ready(args.conditional_model, device)
    guide = store.load_ready(args.guide_model, device)
    print(f"{args.model} and {args.conditional_model} on {model.device}")
    rows = batch_invariance(model, conditional=conditional, guide=guide)
    for r in rows:
        verdict = "identical" if r["identical"] else "DIFFERENT"
        print(
            f"{r['variant']:9s} first {CHUNK_ROWS} rows alone vs in n={r['n']}: "
            f"{verdict} (max abs diff {r['max_abs_diff']:.3g})"
        )
    for variant, seconds in batch_seconds(model, conditional=conditional, guide=guide).items():
        print(f"{variant:9s} 10,000 samples: {seconds:.4f} s (best of 5)")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
