"""The models the service holds: loaded and verified from the store, warmed up, one batcher each.

A checkpoint that fails to load makes only its own model unavailable, with the reason kept for
the 503 that names it; a request that resolves to it (by name, or as its dataset's default) is
refused, never quietly served by another model. `build_registry` verifies every checkpoint
again and reuses the running batcher of any model whose id (weights and configs) did not
change, so a reload notices any change and disturbs nothing that stays.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from service.core.manifest import GUIDE_RECIPE, OBJECTIVES, ModelKind
from service.core.model import ReadyModel, make_ready
from service.core.oracle import make_oracle_ready
from service.core.plan import make_plan
from service.core.schedule import make_schedule
from service.core.spec import SampleSpec
from service.core.step import advance, make_chunks
from service.core.store import CheckpointError, CheckpointStore
from service.core.tuned_spacing import read_beside
from service.serving.admission import DEFAULT_COST, Admission, Cost
from service.serving.batcher import BatcherOptions, ModelBatcher
from service.serving.engine import Engine
from service.serving.job import Hooks
from service.serving.priority import ClassShare
from service.serving.steptime import measured, modeled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    model: ReadyModel
    batcher: ModelBatcher

    @property
    def name(self) -> str:
        return self.model.name


class Unavailable(Exception):
    """The dataset or model asked for is not being served; the message says why."""


class UnknownModel(ValueError):
    pass


@dataclass
class Registry:
    models: dict[str, ServedModel] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # model name -> reason
    # model name -> what each failed one was meant to be, where its name says
    failed_kinds: dict[str, ModelKind] = field(default_factory=dict)

    def _kinds(self) -> dict[str, ModelKind]:
        loaded = {n: s.model.kind for n, s in self.models.items()}
        return {**self.failed_kinds, **loaded}

    def defaults(self, dataset: str) -> dict[str, str]:
        """objective -> model name; the improved recipe wins over the paper's where both exist.

        Failed checkpoints take part: a dataset whose preferred model is broken has that model
        as its default, and requests for it are refused rather than served by another one.
        """
        kinds = self._kinds()  # once: resolve() calls this on every request
        chosen: dict[str, str] = {}
        for name, kind in sorted(kinds.items()):
            if kind.dataset != dataset:
                continue
            current = chosen.get(kind.objective)
            if current is None or kind.preference > kinds[current].preference:
                chosen[kind.objective] = name
        return chosen

    def recipe(self, name: str) -> str:
        """The recipe of a model, loaded or failed."""
        return self._kinds()[name].recipe

    def datasets(self) -> list[str]:
        return sorted({s.model.dataset for s in self.models.values()})

    def unavailable_reason(self, dataset: str, objective: str | None = None) -> str:
        failed = [
            f"{name}: {reason}"
            for name, reason in sorted(self.failures.items())
            if name.startswith(f"{dataset}-") and (objective is None or f"-{objective}" in name)
        ]
        what = f"dataset {dataset!r}" + (f" ({objective} model)" if objective else "")
        if failed:
            return f"{what} is unavailable: " + "; ".join(failed)
        return f"{what} is unavailable: no such model in the store"

    def resolve(self, dataset: str, objective: str, model: str | None) -> ServedModel:
        """The model a request runs on: by id (name or sha256), by objective (`model` names
        one), or the dataset's default model of `objective`."""
        if model is None or model in OBJECTIVES:
            objective = model or objective
            name = self.defaults(dataset).get(objective)
            if name is None:
                raise Unavailable(self.unavailable_reason(dataset, objective))
            if name not in self.models:
                others = sorted(
                    n
                    for n, s in self.models.items()
                    if s.model.dataset == dataset and s.model.objective == objective
                )
                instead = f"; name another {objective} model explicitly: {others}" if others else ""
                raise Unavailable(
                    f"the default {objective} model of {dataset!r}, {name}, is unavailable: "
                    f"{self.failures[name]}{instead}"
                )
            return self.models[name]
        for name, served in self.models.items():
            if model in (name, served.model.id):
                if served.model.dataset != dataset:
                    raise UnknownModel(
                        f"model {model!r} was trained on {served.model.dataset!r}, not {dataset!r}"
                    )
                return served
        if model in self.failures:
            raise Unavailable(f"model {model!r} is unavailable: {self.failures[model]}")
        valid = sorted(
            [*OBJECTIVES, *(n for n, s in self.models.items() if s.model.dataset == dataset)]
        )
        raise UnknownModel(f"unknown model {model!r} for {dataset!r}; valid: {valid}")

    def conditional_datasets(self) -> list[str]:
        return sorted({s.model.dataset for s in self.models.values() if s.model.num_classes})

    def guide(self, dataset: str, name: str | None) -> ServedModel:
        """autoguidance's guide: the model `name`, or the dataset's conditional model of the
        guide recipe (UnknownModel or Unavailable, saying why, when there is none)."""
        if name is None:
            kinds = self._kinds()
            found = sorted(
                n
                for n, k in kinds.items()
                if k.dataset == dataset
                and k.objective == "conditional"
                and k.recipe == GUIDE_RECIPE
            )
            if not found:
                raise UnknownModel(f"no guide model (recipe {GUIDE_RECIPE!r}) of {dataset!r}")
            name = found[0]
        if name in self.failures:
            raise Unavailable(f"guide model {name!r} is unavailable: {self.failures[name]}")
        served = self.models.get(name)
        if served is None:
            valid = sorted(n for n, s in self.models.items() if s.model.dataset == dataset)
            raise UnknownModel(f"unknown guide model {name!r} for {dataset!r}; valid: {valid}")
        if served.model.dataset != dataset:
            raise UnknownModel(f"guide model {name!r} was trained on {served.model.dataset!r}")
        return served

    def retire(self, names: set[str]) -> None:
        """Stop these models taking requests; each finishes what it holds, then leaves."""
        for name in names:
            self.models[name].batcher.retire()


def warm_up(model: ReadyModel) -> None:
    """Two steps of the batchers' own path (`advance`), guided and baseline rows in one batch
    where the model has a density head, so the first request pays no first-call costs."""
    variants = ("baseline", "fixed") if model.density_trained else ("baseline",)
    plans = [make_plan(model, SampleSpec(v, steps=2)) for v in variants]
    if model.num_classes:  # and the class table's gather, and cfg's second pass
        plans.append(make_plan(model, SampleSpec("cfg", steps=2, label=0)))
    chunks = [c for plan in plans for c in make_chunks(plan, 16, 0, model.device)]
    for _ in range(2):
        advance(model, chunks)


def measure_cost(model: ReadyModel, small: int = 16, large: int = 1024) -> Cost:
    """Step time at `small` and `large` rows, baseline and guided, fitted as a line: the
    per-step overhead and the per-row cost that admission predicts with."""

    def step_seconds(variant: str, rows: int) -> float:
        chunks = make_chunks(make_plan(model, SampleSpec(variant, steps=8)), rows, 0, model.device)
        times = []
        for _ in range(6):
            t0 = time.perf_counter()
            advance(model, chunks)
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            times.append(time.perf_counter() - t0)
        return min(times[1:])  # the first step draws the starting points

    def line(variant: str) -> tuple[float, float]:
        a, b = step_seconds(variant, small), step_seconds(variant, large)
        per_row = max((b - a) / (large - small), 1e-9)
        return per_row, max(a - small * per_row, 0.0)

    baseline, overhead = line("baseline")
    guided = line("fixed")[0] if model.density_trained else 3 * baseline
    return Cost(baseline=baseline, guided=max(guided, baseline), step=overhead)


def build_registry(
    model_store: Path,
    options: BatcherOptions,
    hooks: Hooks,
    engine: Engine,
    device: torch.device,
    admission: Admission,
    previous: Registry | None = None,
    warmup: bool = True,
    share: ClassShare | None = None,
    fixed_cost: Cost | None = None,
) -> Registry:
    """Load, verify and warm up every checkpoint and attach a batcher for each to the engine.

    Run it on the engine thread (engine.call): warm-up and cost measurement run torch.
    `fixed_cost` (tests): every model's cost model, not measured, and each step is charged at
    it instead of its measured time (service/serving/steptime.py)."""
    store = CheckpointStore(model_store)
    registry = Registry()
    for name in store.names():
        try:
            ckpt = store.load(name)  # verified in full every time: a reload sees any change
            # its tuned spacing (or why its side file is not used): read anew each time too
            tuned = read_beside(ckpt.path, ckpt.manifest.id, ckpt.schedule.num_timesteps)
            old = previous.models.get(name) if previous else None
            if (
                old is not None
                and old.model.id == ckpt.manifest.id
                and (old.model.tuned_spacing, old.model.tuned_spacing_error) == tuned
            ):
                registry.models[name] = old
                continue
            schedule = make_schedule(ckpt.schedule)
            if ckpt.analytic is not None:
                model = make_oracle_ready(name, ckpt.analytic, schedule, ckpt.manifest.raw, device)
            else:
                model = make_ready(
                    name, ckpt.network, schedule, ckpt.manifest.raw, device, ckpt.classifier
                )
            model = replace(model, tuned_spacing=tuned[0], tuned_spacing_error=tuned[1])
            cost = fixed_cost or DEFAULT_COST
            if warmup:
                warm_up(model)
                if fixed_cost is None:
                    cost = measure_cost(model)
        except (CheckpointError, ValueError, RuntimeError) as e:
            log.error("model %s unavailable: %s", name, e)
            registry.failures[name] = str(e)
            # what a broken checkpoint was meant to be comes from its name alone (its manifest
            # is what failed); it keeps its place as its dataset's default
            kind = ModelKind.from_name(name)
            if kind is not None:
                registry.failed_kinds[name] = kind
            continue
        batcher = ModelBatcher(
            model,
            hooks,
            engine,
            options,
            admission=admission,
            cost=cost,
            share=share,
            run_step=measured if fixed_cost is None else modeled(fixed_cost),
        )
        engine.attach(batcher)
        registry.models[name] = ServedModel(model, batcher)
        log.info("serving %s (%s) on %s; step cost %s", name, model.id[:12], device, cost)
    return registry


def describe(served: ServedModel) -> dict[str, Any]:
    m = served.model
    return {
        "id": m.id,
        "weights_sha256": m.sha256,
        "name": m.name,
        "dataset": m.dataset,
        "objective": m.objective,
        "recipe": m.recipe,
        "device": str(m.device),
        "manifest": m.manifest,
        # its side file's tables (core/tuned_spacing.py), or why none is used
        "tuned_spacing": None if m.tuned_spacing is None else m.tuned_spacing.as_dict(),
        "tuned_spacing_error": m.tuned_spacing_error,
    }
