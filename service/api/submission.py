"""From a validated request to finished samples: pick the model, plan, queue, wait.

Shared by /sample and /evaluate. Every failure becomes an ApiError with the right status:
422 for requests the model cannot serve, 503 (+ Retry-After) for a full queue or a missing
model, 504 for a passed deadline. A client that goes away cancels its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from service.api.errors import ApiError, field_error
from service.api.schemas import SEED_MAX, _Request
from service.api.state import AppState
from service.core.errors import RequestError
from service.core.guiders import get_guider
from service.core.guiders.base import Reference
from service.core.manifest import ORACLE
from service.core.model import ReadyModel
from service.core.plan import Plan, make_plan
from service.core.spec import SampleSpec
from service.serving.admission import Overloaded, TooLong
from service.serving.job import (
    BatcherStopped,
    Cancelled,
    DeadlineExceeded,
    Job,
    QueueFull,
    future_callback,
)
from service.serving.priority import classify
from service.serving.registry import ServedModel, Unavailable, UnknownModel


@dataclass(frozen=True)
class Finished:
    served: ServedModel
    job: Job
    seed: int
    steps: int
    total_s: float


def deadline_of(state: AppState, deadline_s: float | None) -> float:
    """A request's deadline: its own or the server's default, or the 422 past the maximum."""
    s = state.settings
    deadline = deadline_s or s.default_deadline_s
    if deadline > s.max_deadline_s:
        raise field_error(
            "deadline_s",
            f"deadline_s must be at most {s.max_deadline_s}",
            f"0 < deadline_s <= {s.max_deadline_s}",
        )
    return deadline


def _check_limits(state: AppState, body: _Request, n: int, max_n: int) -> float:
    if n > max_n:
        raise field_error("n", f"n must be at most {max_n} on this server", f"1 <= n <= {max_n}")
    return deadline_of(state, body.deadline_s)


def _priority(state: AppState, body: _Request, n: int) -> str:
    limit = state.settings.interactive_max_n
    if body.priority == "interactive" and n > limit:
        raise field_error(
            "priority",
            f"priority 'interactive' is for n <= {limit} on this server",
            f"'batch', or n <= {limit}",
        )
    return classify(n, body.priority, limit)


def default_objective(variant: str, gradient: str | None, label: object = None) -> str:
    """Which of its dataset's models a request runs on when it names none: the guider's
    choice (the paper's guided variants the density model, or the model the gradient names;
    guiders of class-conditional models the conditional one), and any request naming a class
    the conditional model."""
    return "conditional" if label is not None else get_guider(variant).objective(gradient)


def spec_of(body: _Request, n: int, seed: int) -> SampleSpec:
    """The one frozen request the core plans from, built from a validated body."""
    sampler_params = {} if body.sampler_params is None else body.sampler_params.model_dump()
    sampler_params = {k: v for k, v in sampler_params.items() if v is not None}
    if body.eta is not None:
        if "eta" in sampler_params:
            raise field_error("eta", "eta is given twice", "eta or sampler_params.eta, not both")
        sampler_params["eta"] = body.eta
    guider_params = {} if body.guider_params is None else body.guider_params.model_dump()
    return SampleSpec(
        variant=body.variant,
        scale=body.scale,
        n=n,
        seed=seed,
        steps=body.steps,
        sampler=body.sampler,
        sampler_params=sampler_params,
        spacing=body.spacing,
        guider_params={k: v for k, v in guider_params.items() if v is not None},
        gradient=body.gradient,
        target_log_p=body.target_log_p,
        label=body.label,
        schedule=body.guidance_schedule,
        interval=None if body.guidance_interval is None else tuple(body.guidance_interval),
        guide_model=body.guide_model,
    )


def _resolve(state: AppState, body: _Request) -> ServedModel:
    objective = default_objective(body.variant, body.gradient, body.label)
    if state.ready and body.model == ORACLE and ORACLE not in state.registry.defaults(body.dataset):
        having = sorted(
            d for d in state.registry.datasets() if ORACLE in state.registry.defaults(d)
        )
        raise field_error(
            "model",
            f"dataset {body.dataset!r} has no oracle in the store",
            f"model 'oracle' on a dataset with one: {having}",
        )
    if state.ready and body.model is None:
        offered = state.registry.defaults(body.dataset)
        if objective == "plain" and offered and "plain" not in offered and "conditional" in offered:
            objective = "conditional"  # boxes, gaussians: unconditional = the null class
        if objective == "conditional" and offered and objective not in offered:
            field = "class" if body.label is not None else "variant"
            raise field_error(
                field,
                f"dataset {body.dataset!r} has no class-conditional model in the store",
                f"a dataset with one: {sorted(state.registry.conditional_datasets())}",
            )
    if state.ready and body.model is None and objective not in ("plain", "conditional"):
        offered = state.registry.defaults(body.dataset)
        if offered and objective not in offered:  # not shipped, rather than failed to load
            raise field_error(
                "gradient",
                f"no {objective} model of {body.dataset!r} is in the store for this gradient",
                f"a gradient whose model is served: objectives {sorted(offered)}",
            )
    return resolve_model(state, body.dataset, objective, body.model)


def resolve_model(state: AppState, dataset: str, objective: str, model: str | None) -> ServedModel:
    """The served model a request names (or its dataset's default), or the 422/503 saying why."""
    if not state.ready:
        raise ApiError(503, "models are still loading", {"Retry-After": "2"})
    try:
        return state.registry.resolve(dataset, objective, model)
    except UnknownModel as e:
        raise field_error(
            "model", str(e), "a name or sha256 from /models, 'plain', 'density', 'energy'"
        ) from e
    except Unavailable as e:
        raise ApiError(503, str(e), {"Retry-After": "30"}) from e


def _guide(state: AppState, body: _Request, served: ServedModel) -> ReadyModel | None:
    """A guide-model guider's guide: the model named, or the dataset's model of recipe 'guide'
    (a guide named for any other guider is refused by planning)."""
    if get_guider(body.variant).reference is not Reference.GUIDE:
        return None
    try:
        return state.registry.guide(served.model.dataset, body.guide_model).model
    except UnknownModel as e:
        raise field_error("guide_model", str(e), "a conditional model of the dataset") from e
    except Unavailable as e:
        raise ApiError(503, str(e), {"Retry-After": "30"}) from e


async def watch_disconnect(request: Request) -> None:
    """Returns when the client goes away (the body is already read, so the next message is it)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


@dataclass
class Submitted:
    """A request taken by its model's batcher, not yet finished."""

    served: ServedModel
    job: Job
    future: asyncio.Future
    seed: int
    deadline_s: float
    arrived: float
    rows_ahead: int  # rows queued on its model before it, when it was taken


async def plan_for(state: AppState, body: _Request, n: int, seed: int) -> tuple[ServedModel, Plan]:
    """The model a request runs on and its plan, or the 422/503 saying why not."""
    served = _resolve(state, body)
    T = served.model.schedule.num_timesteps
    if body.steps is not None and body.steps > T:
        raise field_error("steps", f"steps must be at most {T} for this model", f"1..{T}")
    args = (served.model, spec_of(body, n, seed), _guide(state, body, served))
    try:
        if get_guider(body.variant).slow_first_plan:  # Density Guidance calibrates (~1 s)
            return served, await run_in_threadpool(make_plan, *args)
        return served, make_plan(*args)
    except RequestError as e:
        field = "eta" if e.field == "sampler_params.eta" and body.eta is not None else e.field
        raise field_error(field, str(e), e.allowed) from e


async def submit_job(
    request: Request | None,
    state: AppState,
    body: _Request,
    n: int,
    max_n: int,
    on_step: Callable[[Job], None] | None = None,
) -> Submitted:
    """Validate against the model, plan, and queue: every refusal (422, 503, 504) is raised
    here, before a stream has sent a byte. `request`: None for a sweep's cell."""
    arrived = time.perf_counter()
    guider = get_guider(body.variant)
    if request is not None:  # the timing middleware's labels
        request.state.dataset, request.state.variant = body.dataset, body.variant
        request.state.sampler = body.sampler or guider.default_sampler
    deadline_s = _check_limits(state, body, n, max_n)
    priority = _priority(state, body, n)
    if request is not None:
        request.state.priority = priority
    seed = body.seed if body.seed is not None else secrets.randbelow(SEED_MAX)
    for attempt in range(2):  # a reload may retire the batcher between resolve and submit
        served, plan = await plan_for(state, body, n, seed)
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        job = Job(plan, n, seed, time.monotonic() + deadline_s, future_callback(loop, future))
        job.on_step, job.priority = on_step, priority
        rows_ahead = served.batcher.queued_rows
        try:
            served.batcher.submit(job)
            break
        except Overloaded as e:
            raise ApiError(
                503, f"{e}; retry after {e.retry_after_s} s", {"Retry-After": str(e.retry_after_s)}
            ) from e
        except TooLong as e:
            raise field_error(
                "deadline_s", str(e), f"deadline_s >= {e.needed_s:.0f} for this request"
            ) from e
        except QueueFull as e:
            raise ApiError(
                503,
                f"the queue of {served.name} is full; retry after {e.retry_after_s} s",
                {"Retry-After": str(e.retry_after_s)},
            ) from e
        except BatcherStopped:
            if attempt:
                raise ApiError(503, "model reloading, retry", {"Retry-After": "1"}) from None
    return Submitted(served, job, future, seed, deadline_s, arrived, rows_ahead)


def result_of(sub: Submitted) -> Finished:
    """The finished job of a resolved future, or the ApiError its failure maps to."""
    try:
        job = sub.future.result()
    except DeadlineExceeded as e:
        raise ApiError(504, f"deadline of {sub.deadline_s} s exceeded: {e}") from e
    except Cancelled as e:
        raise ApiError(499, str(e)) from e
    except BatcherStopped as e:
        raise ApiError(503, str(e), {"Retry-After": "1"}) from e
    return Finished(sub.served, job, sub.seed, job.plan.steps, time.perf_counter() - sub.arrived)


def abandon(sub: Submitted) -> None:
    """The client is gone or the wait was cut short: free its rows at the next step."""
    if not sub.future.done():
        sub.served.batcher.cancel(sub.job)
        # nobody awaits it now: cancelled, the batcher's late answer is dropped instead
        # of logged as "Future exception was never retrieved"
        sub.future.cancel()


async def run_job(
    request: Request, state: AppState, body: _Request, n: int, max_n: int
) -> Finished:
    sub = await submit_job(request, state, body, n, max_n)
    watcher = asyncio.create_task(watch_disconnect(request))
    try:
        await asyncio.wait({sub.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not sub.future.done():
            raise ApiError(499, "client closed the request")
        return result_of(sub)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        abandon(sub)
