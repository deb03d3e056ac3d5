"""`dgs`: the one command line. Each sub-command parses its flags and calls one function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from service.core.data import DATASETS
from service.core.device import DEVICE_CHOICES
from service.core.guidance import VARIANTS


def _train(args: argparse.Namespace) -> int:
    from service.worker.recipes import train_config
    from service.worker.train import train

    config = train_config(
        args.recipe, args.objective, steps=args.steps, seed=args.seed, kl_samples=args.kl_samples
    )
    datasets = sorted(DATASETS) if args.dataset == "all" else [args.dataset]
    for dataset in datasets:
        manifest = train(dataset, config, out=args.out, name=args.name, progress=not args.quiet)
        summary = {
            k: manifest.get(k)
            for k in (
                "name",
                "recipe",
                "train_seconds",
                "final_loss",
                "eval_loss",
                "kl_bits",
                "mean_log_p_hat",
                "log_p_hat_runaway",
                "sha256",
            )
        }
        print(json.dumps(summary))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from service.core.device import pick_device
    from service.core.sampling import sample
    from service.core.store import CheckpointStore

    model = CheckpointStore(args.model_store).load_ready(args.model, pick_device(args.device))
    result = sample(model, args.variant, args.scale, args.n, args.seed, args.steps)
    print(
        json.dumps(
            {
                "model": model.name,
                "sha256": model.sha256,
                "variant": result.variant,
                "scale": result.scale,
                "n": args.n,
                "seed": result.seed,
                "nonfinite": result.nonfinite,
                "seconds": round(result.seconds, 4),
                "first_samples": result.samples[:5].tolist(),
            }
        )
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from service.api.app import serve
    from service.api.settings import Settings

    flags = {
        "host": args.host,
        "port": args.port,
        "model_store": args.model_store,
        "device": args.device,
        "batching": args.batching,
    }
    serve(Settings(**{k: v for k, v in flags.items() if v is not None}))
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the model store over HTTP (settings: env vars)")
    p.add_argument("--host", default=None, help="default: HOST or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: PORT or 8000")
    p.add_argument("--model-store", default=None, help="default: MODEL_STORE or model_store")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    p.add_argument("--batching", default=None, choices=["step", "request", "off"])
    p.set_defaults(func=_serve)


def _reproduce(args: argparse.Namespace) -> int:
    from service.experiments.reproduce import reproduce

    cells = reproduce(
        out=args.out,
        n=args.n,
        sweep_n=args.sweep_n,
        seed=args.seed,
        store=args.model_store,
        datasets=args.datasets,
        recipe=args.recipe,
        retrain=args.retrain,
    )
    print((Path(args.out) / "table1.md").read_text())
    print(f"{len(cells)} cells; tables, sweep.csv and figures in {args.out}/")
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="the paper's Table 1 grid and figures")
    p.add_argument("--out", default="results")
    p.add_argument("--n", type=int, default=10_000, help="samples per cell (the paper: 10,000)")
    p.add_argument("--sweep-n", type=int, default=2_000, help="samples per scale-sweep point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-store", default="model_store")
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=None)
    p.add_argument("--recipe", default="paper", help="which recipe's models (default: paper)")
    p.add_argument("--retrain", action="store_true", help="retrain the models first")
    p.set_defaults(func=_reproduce)


def _bench(args: argparse.Namespace) -> int:
    from service.experiments.bench import bench

    sections = (
        tuple(args.sections) if args.sections else ("sampler", "service", "schedulers", "training")
    )
    bench(
        out=args.out,
        store=args.model_store,
        quick=args.quick,
        sections=sections,
        device=args.device,
    )
    print((Path(args.out) / "bench.md").read_text())
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed benchmarks: ratios measured side by side")
    p.add_argument("--out", default=".bench")
    p.add_argument("--model-store", default="model_store")
    p.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    p.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES))
    p.add_argument(
        "--sections",
        nargs="+",
        default=None,
        choices=["sampler", "service", "schedulers", "training"],
    )
    p.set_defaults(func=_bench)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from service.worker.recipes import OBJECTIVES, RECIPES

    p = sub.add_parser("train", help="train a denoiser and write it to the model store")
    p.add_argument("--dataset", required=True, choices=[*sorted(DATASETS), "all"])
    p.add_argument("--objective", default="plain", choices=OBJECTIVES)
    p.add_argument("--recipe", default="paper", choices=sorted(RECIPES))
    p.add_argument("--steps", type=int, default=None, help="default: the recipe's (10,000)")
    p.add_argument("--seed", type=int, default=None, help="default: the recipe's (0)")
    p.add_argument("--kl-samples", type=int, default=None, help="baseline samples for the KL")
    p.add_argument("--out", default="model_store", help="model store folder")
    p.add_argument("--name", default=None, help="model id (default: <dataset>-<objective>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample offline from one model of the store")
    p.add_argument("--model", required=True, help="model id, e.g. moons-plain")
    p.add_argument("--model-store", default="model_store")
    p.add_argument("--variant", default="baseline", choices=sorted(VARIANTS))
    p.add_argument("--scale", type=float, default=None)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_sample)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_train,
    _add_serve,
    _add_sample,
    _add_reproduce,
    _add_bench,
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dgs", description="density-guidance-service")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError) as e:
        print(f"dgs {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
