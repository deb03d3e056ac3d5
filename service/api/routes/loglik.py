"""POST /loglik: the exact log-density of points under a model (probability-flow ODE)."""

from __future__ import annotations

import asyncio
import contextlib
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
    SolveStopped,
    bits_per_dim,
    default_solver,
    model_log_likelihood,
)
from service.core.model import ReadyModel
from service.serving.admission import Overloaded, TooLong
from service.serving.loglik_admission import SolveTicket

router = APIRouter(tags=["likelihood"])
RTOL = ATOL = 1e-5


async def log_likelihood(
    state: AppState,
    model: ReadyModel,
    points: np.ndarray,
    refuse_when_busy: bool = True,
    deadline_s: float | None = None,
    request: Request | None = None,
) -> Likelihood:
    """On the likelihood thread (one torch thread of its own), not the engine's: an adaptive ODE
    solve takes seconds to minutes and must not stop every model's denoising steps.

    Admission (serving/loglik_admission.py) takes the solve only if it and the solves ahead of
    it can finish inside `deadline_s`: otherwise 503 with a Retry-After from the work ahead, or
    422 when it could not even alone. `refuse_when_busy` False queues it whatever the work
    ahead (an /evaluate whose samples are drawn already). Past `deadline_s` (504), or when
    `request`'s client goes away (499), the solve stops at its next evaluation and the thread
    is free again."""
    try:
        ticket = state.loglik_admission.admit(model.id, len(points), deadline_s, refuse_when_busy)
    except Overloaded as e:
        state.metrics.on_loglik_solve("refused")
        raise ApiError(
            503, f"{e}; retry after {e.retry_after_s} s", {"Retry-After": str(e.retry_after_s)}
        ) from e
    except TooLong as e:
        state.metrics.on_loglik_solve("refused")
        raise field_error(
            "deadline_s", str(e), f"deadline_s >= {e.needed_s:.0f} for these points"
        ) from e
    outcome = "failed"
    try:
        result = await _solve(state, model, points, deadline_s, request, ticket)
        outcome = "done"
        return result
    except ApiError as e:
        outcome = {504: "deadline", 499: "disconnected"}.get(e.status, "failed")
        raise
    finally:
        state.loglik_admission.release(ticket)
        state.metrics.on_loglik_solve(outcome)


def _run(
    state: AppState,
    model: ReadyModel,
    points: np.ndarray,
    stop: threading.Event,
    ticket: SolveTicket,
) -> Likelihood:
    """The solve itself, on the likelihood thread: its work goes to the metrics and to what
    admission learns, whether it finishes or is stopped."""
    admission = state.loglik_admission
    admission.start(ticket)
    cap = state.settings.loglik_max_evaluations
    try:
        result = model_log_likelihood(
            model, points, RTOL, ATOL, max_evaluations=cap, should_stop=stop.is_set
        )
    except SolveStopped as e:
        state.metrics.on_loglik_work(e.calls, e.evaluations, 0.0)
        raise
    evaluations = int(result.evaluations.sum())
    typical = float(np.median(result.evaluations))
    admission.learn(ticket, result.nfev, evaluations, result.seconds, typical)
    state.metrics.on_loglik_work(result.nfev, evaluations, result.seconds)
    return result


async def _solve(
    state: AppState,
    model: ReadyModel,
    points: np.ndarray,
    deadline_s: float | None,
    request: Request | None,
    ticket: SolveTicket,
) -> Likelihood:
    stop = threading.Event()
    if deadline_s is not None and deadline_s <= 0:
        raise ApiError(504, "the request's deadline passed before its likelihood solve began")
    solve = state.loglik_pool.submit(_run, state, model, points, stop, ticket)
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
        raise ApiError(504, f"deadline of {deadline_s:g} s exceeded: the solve was stopped")
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


async def heldout(state: AppState, model: ReadyModel, deadline_s: float | None = None) -> HeldOut:
    """HELDOUT_NLL_POINTS held-out points, once per model id (it does not change); requests
    that arrive while it runs wait on the same computation, each until its own deadline (504
    past it; the computation goes on for the next request, bounded by MAX_DEADLINE_S)."""
    task = state.nll_cache.get(model.id)
    if task is None or (task.done() and task.exception() is not None):
        task = asyncio.ensure_future(_heldout(state, model))
        state.nll_cache[model.id] = task
    if deadline_s is not None and deadline_s <= 0 and not task.done():
        raise ApiError(504, "the request's deadline passed before its held-out likelihood")
    try:
        return await asyncio.wait_for(asyncio.shield(task), deadline_s)
    except TimeoutError:
        raise ApiError(
            504,
            f"deadline exceeded: the held-out likelihood of {model.name} was not done within "
            f"{deadline_s:.3g} s; it goes on, and a later request gets it",
        ) from None


async def heldout_nll_bits(state: AppState, model: ReadyModel) -> float | None:
    return (await heldout(state, model)).nll_bits


async def _heldout(state: AppState, model: ReadyModel) -> HeldOut:
    points = get_dataset(model.dataset, state.settings.heldout_nll_points, HELDOUT_SEED)
    # only /evaluate asks, its samples already drawn: it waits for the solver, never a 503;
    # no one request's deadline stops it (others wait on it), the server's longest does
    deadline = state.settings.max_deadline_s
    result = await log_likelihood(state, model, points, refuse_when_busy=False, deadline_s=deadline)
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
        point_evaluations=[int(k) for k in result.evaluations],
        max_evaluations=state.settings.loglik_max_evaluations,
        solver=default_solver(model),
        seconds=result.seconds,
    )
