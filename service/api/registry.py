"""The models the service holds: loaded and verified from the store, warmed up, one scheduler each.

A checkpoint that fails to load makes only its own model unavailable, with the reason kept for
the 503 that names it. `build_registry` reuses the running scheduler of any model whose
sha256 did not change, so a reload disturbs nothing that stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from service.api.batcher import ModelScheduler
from service.api.engine import Engine
from service.api.metrics import Metrics
from service.api.settings import Settings
from service.core.model import ReadyModel
from service.core.sampling import advance, make_chunks, make_plan
from service.core.store import CheckpointError, CheckpointStore

log = logging.getLogger(__name__)
OBJECTIVES = ("plain", "density")


@dataclass(frozen=True)
class ServedModel:
    model: ReadyModel
    scheduler: ModelScheduler

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

    def defaults(self, dataset: str) -> dict[str, str]:
        """objective -> model name; the improved recipe wins over the paper's where both exist."""
        chosen: dict[str, str] = {}
        for name, served in sorted(self.models.items()):
            m = served.model
            if m.dataset != dataset:
                continue
            current = chosen.get(m.objective)
            if current is None or _preference(m) > _preference(self.models[current].model):
                chosen[m.objective] = name
        return chosen

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

    def resolve(self, dataset: str, needs_density: bool, model: str | None) -> ServedModel:
        """The model a request runs on: by id (name or sha256), by objective, or the default."""
        if model is None or model in OBJECTIVES:
            objective = model or ("density" if needs_density else "plain")
            name = self.defaults(dataset).get(objective)
            if name is None:
                raise Unavailable(self.unavailable_reason(dataset, objective))
            return self.models[name]
        for name, served in self.models.items():
            if model in (name, served.model.sha256):
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

    def stop(self, names: set[str] | None = None) -> None:
        for name, served in self.models.items():
            if names is None or name in names:
                served.scheduler.stop(timeout=30)


def _preference(model: ReadyModel) -> int:
    return 1 if model.manifest.get("recipe", "paper") != "paper" else 0


def warm_up(model: ReadyModel) -> None:
    """Two steps of the schedulers' own path (`advance`), guided and baseline rows in one batch
    where the model has a density head, so the first request pays no first-call costs."""
    variants = ("baseline", "fixed") if model.density_trained else ("baseline",)
    chunks = [
        c for v in variants for c in make_chunks(make_plan(model, v, steps=2), 16, 0, model.device)
    ]
    for _ in range(2):
        advance(model, chunks)


def build_registry(
    settings: Settings,
    metrics: Metrics,
    engine: Engine,
    device: torch.device,
    previous: Registry | None = None,
) -> Registry:
    """Load, verify and warm up every checkpoint; run it on the engine thread (engine.call)."""
    store = CheckpointStore(settings.model_store)
    registry = Registry()
    for name in store.names():
        try:
            manifest = store.read_manifest(name)
            old = previous.models.get(name) if previous else None
            if old is not None and old.model.sha256 == manifest["sha256"]:
                registry.models[name] = old
                continue
            model = store.load_ready(name, device)
            if settings.warmup:
                warm_up(model)
        except (CheckpointError, ValueError, RuntimeError) as e:
            log.error("model %s unavailable: %s", name, e)
            registry.failures[name] = str(e)
            continue
        scheduler = ModelScheduler(
            model,
            metrics,
            engine,
            mode=settings.batching,
            max_rows_per_step=settings.max_rows_per_step,
            max_rows_per_request_step=settings.max_rows_per_request_step,
            max_queued_rows=settings.max_queued_rows,
            batch_window_s=settings.batch_window_ms / 1000,
        )
        registry.models[name] = ServedModel(model, scheduler)
        log.info("serving %s (%s) on %s", name, model.sha256[:12], device)
    metrics.set_models(
        [(s.model.dataset, s.model.sha256, str(device)) for s in registry.models.values()],
        queue_capacity=settings.max_queued_rows,
    )
    return registry


def describe(served: ServedModel) -> dict[str, Any]:
    m = served.model
    return {
        "id": m.sha256,
        "name": m.name,
        "dataset": m.dataset,
        "objective": m.objective,
        "recipe": m.manifest.get("recipe", "paper"),
        "device": str(m.device),
        "manifest": m.manifest,
    }
