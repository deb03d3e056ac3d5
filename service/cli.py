"""`dgs`: the one command line. Each sub-command parses its flags and calls one function."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from service.cli_sweep import add_sweep
from service.core.data import DATASETS, LABELLED, PAPER_DATASETS
from service.core.device import DEVICE_CHOICES
from service.core.errors import RequestError
from service.core.few_step import FEW_STEP
from service.core.guiders import GUIDERS, all_params, scale_bounds
from service.core.guiders.paper import GRADIENTS
from service.core.guiders.weights import SCHEDULES
from service.core.samplers import SAMPLERS
from service.core.spacing import SPACINGS

SCALE_RANGE = scale_bounds()


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr (exit 2); the usage is one --help away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {number}")
        return number

    return parse


_positive, _seed = _int_at_least(1), _int_at_least(0)  # numpy's SeedSequence refuses < 0


def _scale(value: str) -> float:
    low, high = SCALE_RANGE
    try:
        scale = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not low <= scale <= high:  # false for NaN too
        raise argparse.ArgumentTypeError(
            f"must be a finite number in [{low:g}, {high:g}], got {value!r}"
        )
    return scale


def _model_name(value: str) -> str:
    from service.core.store import NAME_PATTERN

    if not NAME_PATTERN.match(value):
        raise argparse.ArgumentTypeError(
            f"invalid model name {value!r}: up to 64 lowercase letters, digits, - _ ."
        )
    return value


def _existing_folder(value: str) -> Path:
    if not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"no model store at {value} (not a folder)")
    return Path(value)


def _output_folder(value: str) -> Path:
    """A folder we can create and write in: checked before minutes of work, not after them."""
    existing = Path(value)
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write to {value}: {existing} is not a folder")
    try:
        with tempfile.TemporaryDirectory(dir=existing):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(
            f"cannot write to {value}: cannot create anything in {existing} ({e.strerror})"
        ) from None
    return Path(value)


def _finite(value: Any) -> Any:
    """NaN and infinities (a diverged row, a diverged loss) as None: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    print(json.dumps(_finite(value), allow_nan=False))


def _train(args: argparse.Namespace) -> int:
    from service.worker.recipes import train_config
    from service.worker.train import train

    if args.name and args.dataset == "all":
        raise ValueError("--name names one model; with --dataset all each would overwrite the last")
    config = train_config(
        args.recipe, args.objective, steps=args.steps, seed=args.seed, kl_samples=args.kl_samples
    )
    if args.dataset != "all":
        datasets = [args.dataset]
    else:  # the paper's four, or for class-conditional models the labelled three
        datasets = sorted(LABELLED if args.objective == "conditional" else PAPER_DATASETS)
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
        if "classifier" in manifest:
            summary["classifier_heldout_accuracy"] = manifest["classifier"]["heldout_accuracy"]
        _print_json(summary)
    return 0


def _load_model(args: argparse.Namespace) -> Any:
    """`--model` from `--model-store` on `--device`, or a ValueError naming what the store holds."""
    from service.core.device import pick_device
    from service.core.store import CheckpointStore

    store = CheckpointStore(args.model_store)
    if args.model not in (names := store.names()):
        held = ", ".join(names) or "no models"
        raise ValueError(f"no model {args.model!r} in {args.model_store} (it holds {held})")
    return store.load_ready(args.model, pick_device(args.device))


def _class_arg(value: str | None) -> int | str | None:
    """--class 0 is an index, --class left a name."""
    return int(value) if value is not None and value.isdigit() else value


def _load_guide(args: argparse.Namespace, model: Any) -> Any:
    """A guide-model guider's guide: --guide-model, or the dataset's conditional model of recipe
    guide (a guide named for another guider is refused by planning)."""
    from service.core.guiders.base import Reference

    if GUIDERS[args.variant].reference is not Reference.GUIDE:
        return None
    from service.core.manifest import GUIDE_RECIPE, ModelKind
    from service.core.store import CheckpointStore

    name = args.guide_model or ModelKind(model.dataset, "conditional", GUIDE_RECIPE).name
    return CheckpointStore(args.model_store).load_ready(name, model.device)


def _params(pairs: list[str] | None, option: str) -> dict[str, float]:
    """--guider-param name=value (repeatable) -> {name: value}; the core checks the ranges."""
    out = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{option} expects name=number, got {pair[:64]!r}") from None
        if not sep:
            raise ValueError(f"{option} expects name=number, got {pair[:64]!r}")
    return out


def spec_of(args: argparse.Namespace) -> Any:
    """The one frozen request the core plans from, built from `dgs sample`'s flags."""
    from service.core.spec import SampleSpec

    sampler_params = _params(args.sampler_param, "--sampler-param")
    if args.eta is not None:
        sampler_params["eta"] = args.eta
    return SampleSpec(
        variant=args.variant,
        scale=args.scale,
        n=args.n,
        seed=args.seed,
        steps=args.steps,
        sampler=args.sampler,
        sampler_params=sampler_params,
        spacing=args.spacing,
        guider_params=_params(args.guider_param, "--guider-param"),
        gradient=args.gradient,
        target_log_p=args.target_log_p,
        label=_class_arg(args.label),
        schedule=args.guidance_schedule,
        interval=None if args.guidance_interval is None else tuple(args.guidance_interval),
        guide_model=args.guide_model,
    )


def _sample(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from service.core.offline import sample

    spec = spec_of(args)
    model = _load_model(args)
    # stderr, so stdout stays one JSON object; by default only when stderr is a terminal
    with tqdm(
        unit="eval",
        desc=f"n={args.n}",
        disable=None if args.progress is None else not args.progress,
    ) as bar:

        def advanced(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = sample(model, spec, _load_guide(args, model), on_evaluation=advanced)
    _print_json(
        {
            "model": model.name,
            "sha256": model.sha256,
            "variant": result.variant,
            "scale": result.scale,
            "sampler": result.sampler,
            "spacing": result.spacing,
            "sampler_params": result.sampler_params,
            "steps": result.steps,
            "evaluations": result.evaluations,
            "n": args.n,
            "seed": result.seed,
            "nonfinite": result.nonfinite,
            "seconds": round(result.seconds, 4),
            "first_samples": result.samples[:5].tolist(),
            "gradient": result.gradient,
            "target_log_p": result.target_log_p,
            "mean_log_p": None if result.log_p is None else float(result.log_p.mean()),
            "class": result.label,
        }
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from service.api.app import serve
    from service.api.settings import Settings, explain

    flags = {
        "host": args.host,
        "port": args.port,
        "model_store": args.model_store,
        "device": args.device,
        "batching": args.batching,
    }
    try:
        settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:  # pydantic's text spans lines; a start-up error gets one
        raise ValueError(explain(e)) from None
    serve(settings)
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the model store over HTTP (settings: env vars)")
    p.add_argument("--host", default=None, help="default: HOST or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: PORT or 8000")
    p.add_argument("--model-store", default=None, help="default: MODEL_STORE or model_store")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    p.add_argument("--batching", default=None, choices=["step", "request", "off"])
    p.set_defaults(func=_serve)


# Packages of the optional `experiments` extra (pyproject.toml), absent from a served image.
EXPERIMENT_PACKAGES = ("matplotlib", "aiohttp", "httpx")


def _experiments(module: str, command: str) -> Any:
    """Import an experiments module, or say which extra to install when a package is missing.

    The one way served code reaches `experiments` (a top-level package, not in the image): by
    name, at run time; the import contracts forbid `service` any static import of it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if missing == module.split(".")[0]:
            raise RuntimeError(
                f"`dgs {command}` needs the '{missing}' package, which is not installed (the "
                "served image has none): run it from a checkout, after pip install -e "
                "'.[experiments]' (or make install)"
            ) from e
        if missing not in EXPERIMENT_PACKAGES:
            raise
        raise RuntimeError(
            f"`dgs {command}` needs {missing}, from the optional 'experiments' extra: "
            "pip install 'density-guidance-service[experiments]' (from a checkout: "
            "pip install '.[experiments]', or make install)"
        ) from e


def _reproduce(args: argparse.Namespace) -> int:
    if args.server:
        on_server = _experiments("experiments.reproduce_sweeps", "reproduce").reproduce_on_server
        datasets = args.datasets or sorted(PAPER_DATASETS)
        rows = on_server(
            args.server, Path(args.out), datasets, args.n, args.sweep_n, args.seed, True
        )
        failed = sum(r["state"] != "done" for r in rows)
        print(
            f"{len(rows)} cells as sweeps on {args.server} ({failed} failed); {args.out}/sweeps.csv"
        )
        return 0 if not failed else 1
    reproduce = _experiments("experiments.reproduce", "reproduce").reproduce

    cells = reproduce(
        out=args.out,
        n=args.n,
        sweep_n=args.sweep_n,
        seed=args.seed,
        store=args.model_store,
        datasets=args.datasets,
        recipe=args.recipe,
        retrain=args.retrain,
        what_works_n=args.what_works_n,
        what_works_steps=args.what_works_steps,
        guidance_sweep_n=args.guidance_sweep_n,
        comparison_n=args.comparison_n,
    )
    print((Path(args.out) / "table1.md").read_text())
    if args.what_works_n:
        print((Path(args.out) / "what_works.md").read_text())
    if args.guidance_sweep_n:
        print((Path(args.out) / "guidance_sweep.md").read_text())
    if args.comparison_n:
        print((Path(args.out) / "guider_comparison.md").read_text())
    print(f"{len(cells)} cells; tables, sweep.csv and figures in {args.out}/")
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="the paper's Table 1 grid and figures")
    p.add_argument("--out", type=_output_folder, default="results")
    p.add_argument("--n", type=_positive, default=10_000, help="samples per cell (paper: 10,000)")
    p.add_argument("--sweep-n", type=_positive, default=2_000, help="samples per scale-sweep point")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--model-store", default="model_store")
    p.add_argument("--datasets", nargs="+", choices=sorted(PAPER_DATASETS), default=None)
    p.add_argument("--recipe", default="paper", help="which recipe's models (default: paper)")
    p.add_argument("--retrain", action="store_true", help="retrain the models first")
    p.add_argument(
        "--server",
        default=None,
        help="run Table 1 and the scale sweep as sweeps on this server (its database keeps "
        "them) instead of in this process; writes OUT/sweeps.csv",
    )
    p.add_argument(
        "--what-works-n",
        type=_seed,  # an integer >= 0
        default=2_000,
        help="samples per cell of the second table, 'what works' (0: skip it)",
    )
    p.add_argument(
        "--what-works-steps",
        type=_positive,
        default=None,
        help="reverse steps of its cells (default: the models' T)",
    )
    p.add_argument(
        "--guidance-sweep-n",
        type=_seed,  # an integer >= 0
        default=2_000,
        help="samples per point of the class-conditional w sweep, 0..10 (0: skip it)",
    )
    p.add_argument(
        "--comparison-n",
        type=_seed,  # an integer >= 0
        default=2_000,
        help="samples per point of the guiders' comparison at matched w (0: skip it)",
    )
    p.set_defaults(func=_reproduce)


def _bench(args: argparse.Namespace) -> int:
    module = _experiments("experiments.bench", "bench")
    bench = module.bench
    sections = tuple(args.sections) if args.sections else BENCH_SECTIONS
    bench(
        out=args.out,
        store=args.model_store,
        quick=args.quick,
        sections=sections,
        device=args.device,
    )
    print((Path(args.out) / "bench.md").read_text())
    return 0


# experiments.bench_spec.SECTIONS, copied: `dgs --help` must work with no experiments package
# (the served image), and served code never imports it; tests/test_cli.py checks the two agree
BENCH_SECTIONS = (
    "sampler",
    "guidance",
    "service",
    "stream",
    "schedulers",
    "priorities",
    "overload",
    "profile",
    "training",
    "refactor",
    "exact",
    "few_step",
    "sweep",
    "sweep_latency",
    "loglik",
)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed benchmarks: ratios measured side by side")
    p.add_argument("--out", type=_output_folder, default=".bench")
    p.add_argument("--model-store", default="model_store")
    p.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    p.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES))
    p.add_argument(
        "--sections",
        nargs="+",
        default=None,
        choices=list(BENCH_SECTIONS),
    )
    p.set_defaults(func=_bench)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from service.worker.recipes import OBJECTIVES, RECIPES

    p = sub.add_parser("train", help="train a denoiser and write it to the model store")
    p.add_argument("--dataset", required=True, choices=[*sorted(DATASETS), "all"])
    p.add_argument("--objective", default="plain", choices=OBJECTIVES)
    p.add_argument("--recipe", default="paper", choices=sorted(RECIPES))
    p.add_argument("--steps", type=_positive, default=None, help="default: the recipe's (10,000)")
    p.add_argument("--seed", type=_seed, default=None, help="default: the recipe's (0)")
    p.add_argument("--kl-samples", type=_positive, default=None, help="baseline samples for KL")
    p.add_argument("--out", type=_output_folder, default="model_store", help="model store folder")
    p.add_argument(
        "--name", type=_model_name, default=None, help="model id (default: <dataset>-<objective>)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _oracles(args: argparse.Namespace) -> int:
    from service.core.oracle import ORACLE_SCHEDULES
    from service.core.store import CheckpointStore

    store = CheckpointStore(args.out)
    datasets = sorted(DATASETS) if args.dataset == "all" else [args.dataset]
    for dataset in datasets:
        for recipe in ORACLE_SCHEDULES:
            manifest = store.save_oracle(dataset, recipe)
            _print_json({"name": manifest["name"], "id": manifest["id"]})
    return 0


def _add_oracles(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "oracles", help="write the exact (analytic) oracle models' manifests to the store"
    )
    p.add_argument("--dataset", default="all", choices=[*sorted(DATASETS), "all"])
    p.add_argument("--out", type=_output_folder, default="model_store", help="model store folder")
    p.set_defaults(func=_oracles)


def _step_counts(value: str) -> list[int]:
    try:
        counts = sorted({int(v) for v in value.split(",")})
    except ValueError:
        message = f"expected step counts like 5,10,20, got {value!r:.40}"
        raise argparse.ArgumentTypeError(message) from None
    if not counts or counts[0] < 2:
        raise argparse.ArgumentTypeError("step counts must be at least 2")
    return counts


def _tune_spacing(args: argparse.Namespace) -> int:
    from service.core.store import CheckpointStore
    from service.worker.spacing_search import tune

    store = CheckpointStore(args.model_store)
    for name in args.model:
        model = store.load_ready(name)
        if max(args.steps) >= model.schedule.num_timesteps:
            raise ValueError(
                f"--steps must be below the model's T = {model.schedule.num_timesteps}"
            )
        log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
        existing = model.tuned_spacing if args.refine else None
        if args.refine and existing is None:
            why = model.tuned_spacing_error or "it has none"
            raise ValueError(f"--refine: no tuned spacing of {name} to refine ({why})")
        if existing is not None and existing.sampler != args.sampler:
            raise ValueError(f"--refine: {name}'s spacing was tuned for {existing.sampler}")
        tuned = tune(model, args.sampler, args.steps, n=args.n, log=log, existing=existing)
        path = store.save_tuned_spacing(name, tuned)
        _print_json({"model": name, "path": str(path), **tuned.as_dict()})
    return 0


def _add_tune_spacing(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune-spacing",
        help="search a model's few-step timesteps on its samples' KL; write them beside it",
    )
    p.add_argument("--model", required=True, nargs="+", type=_model_name, help="model ids")
    p.add_argument("--model-store", type=_existing_folder, default="model_store")
    p.add_argument("--sampler", default=FEW_STEP.sampler, choices=sorted(SAMPLERS))
    p.add_argument("--steps", type=_step_counts, default=[5, 8, 10, 12, 15, 20], help="e.g. 5,8,10")
    p.add_argument("--n", type=_positive, default=4000, help="samples per trial")
    p.add_argument(
        "--refine",
        action="store_true",
        help="start from the model's stored tables: only the pass from smaller step counts up",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_tune_spacing)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample offline from one model of the store")
    p.add_argument("--model", required=True, type=_model_name, help="model id, e.g. moons-plain")
    p.add_argument("--model-store", type=_existing_folder, default="model_store")
    p.add_argument("--variant", default="baseline", choices=sorted(GUIDERS))
    low, high = SCALE_RANGE
    p.add_argument("--scale", type=_scale, default=None, help=f"in [{low:g}, {high:g}]")
    p.add_argument("--n", type=_positive, default=1000)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--steps", type=_positive, default=None, help="default: the model's T")
    p.add_argument(
        "--sampler",
        default=None,
        choices=sorted(SAMPLERS),
        help="default: the variant's (ddpm for most); with --steps alone, the few-step default "
        f"({FEW_STEP.sampler}, {FEW_STEP.spacing} spacing)",
    )
    p.add_argument(
        "--spacing",
        default=None,
        choices=list(SPACINGS),
        help="which of the model's timesteps a run of fewer than T steps keeps (default uniform)",
    )
    p.add_argument("--eta", type=float, default=None, help="ddim only: in [0, 1] (default 0)")
    p.add_argument(
        "--gradient", default=None, choices=sorted(GRADIENTS), help="paper variants' gradient"
    )
    p.add_argument(
        "--target-log-p", type=float, default=None, help="variant density: target in nats"
    )
    p.add_argument(
        "--class", dest="label", default=None, help="conditional models: a class index or name"
    )
    p.add_argument("--guide-model", type=_model_name, default=None, help="autoguidance's guide")
    p.add_argument(
        "--guidance-interval",
        nargs=2,
        type=float,
        default=None,
        metavar=("SIGMA_LO", "SIGMA_HI"),
        help="weighted variants: guide only at noise levels in [SIGMA_LO, SIGMA_HI]",
    )
    p.add_argument(
        "--guidance-schedule",
        default=None,
        choices=sorted(SCHEDULES),
        help="weighted variants: w over sigma (default constant)",
    )
    names = ", ".join(f"{k} ({', '.join(takers)})" for k, (_, takers) in all_params().items())
    p.add_argument(
        "--guider-param",
        action="append",
        metavar="NAME=VALUE",
        help=f"a variant's parameter, repeatable: {names}",
    )
    p.add_argument(
        "--sampler-param", action="append", metavar="NAME=VALUE", help="e.g. eta=0.5 (ddim)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    p.set_defaults(func=_sample)


def _loglik(args: argparse.Namespace) -> int:
    import numpy as np

    from service.core.data import get_dataset
    from service.core.likelihood import bits_per_dim, default_solver, model_log_likelihood

    model = _load_model(args)
    points = (
        np.load(args.points) if args.points else get_dataset(model.dataset, args.n, _heldout(args))
    )
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise ValueError(f"{args.points}: need a finite (N, 2) array, got shape {points.shape}")
    result = model_log_likelihood(
        model,
        points,
        rtol=args.tol,
        atol=args.tol,
        solver=args.solver,
        max_evaluations=args.max_evaluations,
    )
    finite = result.log_density[result.finite]
    _print_json(
        {
            "model": model.name,
            "id": model.id,
            "n": len(points),
            "finite": int(result.finite.sum()),
            "mean_log_density": float(finite.mean()) if len(finite) else None,
            "bits_per_dim": float(bits_per_dim(finite)) if len(finite) else None,
            "evaluations": result.nfev,
            "point_evaluations_max": int(result.evaluations.max()),
            "solver": args.solver or default_solver(model),
            "seconds": round(result.seconds, 3),
        }
    )
    return 0


def _heldout(args: argparse.Namespace) -> int:
    from service.core.likelihood import HELDOUT_SEED

    return HELDOUT_SEED if args.seed is None else args.seed


def _add_loglik(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loglik", help="exact log-likelihood of held-out data (or given points) under a model"
    )
    p.add_argument("--model", required=True, type=_model_name, help="model id, e.g. moons-plain")
    p.add_argument("--model-store", type=_existing_folder, default="model_store")
    p.add_argument("--n", type=_positive, default=1000, help="held-out data points")
    p.add_argument(
        "--seed", type=_seed, default=None, help="held-out data's seed (default: the service's)"
    )
    p.add_argument("--points", default=None, help="a .npy (N, 2) array instead of data")
    p.add_argument("--tol", type=float, default=1e-5, help="solver rtol and atol")
    p.add_argument(
        "--solver",
        default=None,
        choices=["pointwise", "scipy"],
        help="pointwise: each point its own RK23 steps; scipy: one shared step (default: the "
        "service's, pointwise but scipy on oracles)",
    )
    p.add_argument(
        "--max-evaluations", type=_positive, default=None, help="cap on each point's evaluations"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_loglik)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_train,
    _add_oracles,
    _add_tune_spacing,
    _add_serve,
    _add_sample,
    _add_loglik,
    _add_reproduce,
    _add_bench,
    add_sweep,
]


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="dgs", description="density-guidance-service")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RequestError as e:  # the field and its allowed values, as the API's 422 names them
        print(f"dgs {args.command}: error: {e.field}: {e} (allowed: {e.allowed})", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as e:  # one line, not a traceback
        print(f"dgs {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
