"""What the app holds between requests, and the dependency that hands it to routes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Annotated

import torch
from fastapi import Depends, Request

from service.api.metrics import Metrics
from service.api.settings import Settings
from service.serving.admission import Admission, Cost
from service.serving.batcher import BatcherOptions
from service.serving.engine import Engine
from service.serving.loglik_admission import LoglikAdmission
from service.serving.priority import ClassShare
from service.serving.registry import Registry, build_registry
from service.sweeps.runner import SweepRunner


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    device: torch.device
    engine: Engine
    registry: Registry = field(default_factory=Registry)
    ready: bool = False
    load_error: str | None = None
    started_at: float = field(default_factory=time.time)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    admission: Admission = field(default_factory=Admission)
    share: ClassShare = field(default_factory=ClassShare)  # the priority classes' step time
    nll_cache: dict[str, asyncio.Future] = field(default_factory=dict)  # model id -> bits/dim
    loglik_pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="loglik", initializer=torch.set_num_threads, initargs=(1,)
        )
    )
    loglik_admission: LoglikAdmission = field(default_factory=LoglikAdmission)
    sweeps: SweepRunner | None = None  # None: the database could not be opened
    sweeps_error: str | None = None

    def __post_init__(self) -> None:
        self.admission.enabled = self.settings.admission == "deadline"
        self.loglik_admission.enabled = self.settings.admission == "deadline"
        self.loglik_admission.max_evaluations = self.settings.loglik_max_evaluations
        self.share.min_share = self.settings.batch_min_share


async def load_registry(state: AppState, previous: Registry | None = None) -> Registry:
    """Build the registry from the store on the engine thread and publish its models' gauges."""
    s = state.settings
    fixed = None if s.fixed_step_cost is None else Cost(*s.fixed_step_cost)
    options = BatcherOptions(
        mode=s.batching,
        max_rows_per_step=s.max_rows_per_step,
        max_rows_per_request_step=s.max_rows_per_request_step,
        max_queued_rows=s.max_queued_rows,
        batch_window_s=s.batch_window_ms / 1000,
        scheduling=s.scheduling,
        order=s.interactive_order,
    )
    registry = await asyncio.wrap_future(
        state.engine.call(
            lambda: build_registry(
                s.model_store,
                options,
                state.metrics,
                state.engine,
                state.device,
                state.admission,
                previous,
                warmup=s.warmup,
                share=state.share,
                fixed_cost=fixed,
            )
        )
    )
    state.metrics.set_models(
        [(m.model.dataset, n, m.model.id, str(state.device)) for n, m in registry.models.items()],
        queue_capacity=s.max_queued_rows,
    )
    return registry


async def get_state(request: Request) -> AppState:
    return request.app.state.dgs


# async: a plain def would send every request through the thread pool
StateDep = Annotated[AppState, Depends(get_state)]
