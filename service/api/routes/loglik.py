"""POST /loglik: the exact log-density of points under a model (probability-flow ODE)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import threading
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Depends, Request

from service.api.body_guard import require_json
from service.api.errors import ApiError, field_error
from service.api.schemas import LoglikRequest, LoglikResponse, error_responses
from service.api.state import AppState, StateDep
from service.api.submission import deadline_of, resolve_model, watch_disconnect
from service.core.data import get_dataset
from service.core.exact.metrics import forward_kl_bits
from service.core.likelihood import (
    HELDOUT_SEED,
    Likelihood,
    bits_per_dim,
    model_log_likelihood,
)
from service.core.model import ReadyModel

router = APIRouter(tags=["likelihood"])
RTOL = ATOL = 1e-5
MAX_PENDING = 2  # likelihood requests running or waiting; beyond: 503


async def log_likelihood(
    state: AppState,
    model: ReadyModel,
    points: np.ndarray,
    refuse_when_busy: bool = True,
    deadline_s: float | None = None,
    request: Request | None = None,
) -> Likelihood:
    """On the likelihood thread (one torch thread of its own), not the engine's: an adaptive ODE
    solve takes seconds to a minute and must not stop every model's denoising steps.
    `refuse_when_busy` False queues behind the solves in hand instead of a 503 (an /evaluate
    whose samples are already drawn). Past `deadline_s` (504), or when `request`'s client goes
    away (499), the solve stops at its next evaluation and the thread is free again."""
    if not refuse_when_busy:  # not counted: what /loglik may queue is its own
        return await _solve(state, model, points, deadline_s, request)
    if state.loglik_pending >= MAX_PENDING:
        raise ApiError(503, "the likelihood solver is busy; retry later", {"Retry-After": "10"})
    state.loglik_pending += 1
    try:
        return await _solve(state, model, points, deadline_s, request)
    finally:
        state.loglik_pending -= 1


async def _solve(
    state: AppState,
    model: ReadyModel,
    points: np.ndarray,
    deadline_s: float | None,
    request: Request | None,
) -> Likelihood:
    stop = threading.Event()
    solve = state.loglik_pool.submit(
        functools.partial(model_log_likelihood, model, points, RTOL, ATOL, should_stop=stop.is_set)
    )
    answer = asyncio.wrap_future(solve)
    # a stopped solve ends in SolveStopped, which nobody awaits any more: read it here
    answer.add_done_callback(lambda f: f.cancelled() or f.exception())
    watcher = asyncio.ensure_future(watch_disconnect(request)) if request is not None else None
    try:
        waited = {answer} if watcher is None else {answer, watcher}
        done, _ = await asyncio.wait(waited, timeout=deadline_s, return_when="FIRST_COMPLETED")
        if answer in done:
            return answer.result()
        if watcher is not None and watcher in done:
            raise ApiError(499, "client closed the request")
        raise ApiError(504, f"deadline of {deadline_s} s exceeded: the solve was stopped")
    finally:
        stop.set()  # a no-op for a finished solve; a queued or running one stops at once
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


@dataclass(frozen=True)
class HeldOut:
    """A model's likelihood of the held-out points: bits/dim, and its exact forward KL to the
    data in bits with its standard error (core/exact/metrics.py)."""

    nll_bits: float | None
    forward_kl_bits: float | None
    forward_kl_se_bits: float | None


async def heldout(state: AppState, model: ReadyModel) -> HeldOut:
    """HELDOUT_NLL_POINTS held-out points, once per model id (it does not change); requests
    that arrive while it runs wait on the same computation."""
    task = state.nll_cache.get(model.id)
    if task is None or (task.done() and task.exception() is not None):
        task = asyncio.ensure_future(_heldout(state, model))
        state.nll_cache[model.id] = task
    return await asyncio.shield(task)


async def heldout_nll_bits(state: AppState, model: ReadyModel) -> float | None:
    return (await heldout(state, model)).nll_bits


async def _heldout(state: AppState, model: ReadyModel) -> HeldOut:
    points = get_dataset(model.dataset, state.settings.heldout_nll_points, HELDOUT_SEED)
    # only /evaluate asks, its samples already drawn: it waits for the solver, never a 503
    result = await log_likelihood(state, model, points, refuse_when_busy=False)
    finite = result.log_density[result.finite]
    if not len(finite):
        return HeldOut(None, None, None)
    kl, se = forward_kl_bits(model.dataset, points[result.finite], finite)
    return HeldOut(float(bits_per_dim(finite)), kl, se)


@router.post(
    "/loglik",
    response_model=LoglikResponse,
    dependencies=[Depends(require_json)],
    responses=error_responses(400, 413, 415, 422, 503, 504),
)
async def loglik(body: LoglikRequest, request: Request, state: StateDep) -> LoglikResponse:
    """log p(x) per point in nats, and the mean in bits per dimension, from the model's
    probability-flow ODE with the exact 2x2 divergence (adaptive solver, rtol = atol = 1e-5)."""
    if (body.points is None) == (body.n is None):
        raise field_error("points", "give either points or n, not both or neither", "one of them")
    deadline_s = deadline_of(state, body.deadline_s)
    served = resolve_model(state, body.dataset, "plain", body.model)
    model = served.model
    if body.points is not None:
        points = np.asarray(body.points, dtype=np.float64)
    else:
        points = get_dataset(body.dataset, body.n, body.seed).astype(np.float64)
    result = await log_likelihood(state, model, points, True, deadline_s, request)
    finite = result.log_density[result.finite]
    mean = float(finite.mean()) if len(finite) else None
    bpd = float(bits_per_dim(finite)) if len(finite) else None
    if body.points is None and bpd is not None and body.model is None:
        state.metrics.on_nll(body.dataset, bpd)
    return LoglikResponse(
        log_density=[
            float(v) if ok and math.isfinite(v) else None
            for v, ok in zip(result.log_density, result.finite, strict=True)
        ],
        finite=[bool(ok) for ok in result.finite],
        reasons=[None if r is None else str(r) for r in result.reasons]
        if result.reasons is not None
        else [],
        mean_log_density=mean,
        bits_per_dim=bpd,
        n=len(points),
        dataset=body.dataset,
        model=model.id,
        model_name=model.name,
        rtol=RTOL,
        atol=ATOL,
        evaluations=result.nfev,
        seconds=result.seconds,
    )
