"""POST /evaluate: sample through the shared batcher, then score off the event loop."""

from __future__ import annotations

import math
import time

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from service.api.body_guard import require_json
from service.api.routes.loglik import heldout, log_likelihood
from service.api.schemas import (
    EvaluateRequest,
    EvaluateResponse,
    ExactMetrics,
    error_responses,
)
from service.api.state import AppState, StateDep
from service.api.submission import Finished, run_job
from service.core.class_metrics import class_scores, has_class_metrics
from service.core.evaluation import score
from service.core.model import ReadyModel
from service.core.offline import SampleResult
from service.serving.job import Job

router = APIRouter(tags=["sampling"])


def _left(job: Job) -> float:
    """Seconds left of the request's deadline (the job's, set when it was admitted)."""
    return job.deadline - time.monotonic()


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


# Samples beyond this are no points of the data's scale (a diverged guided run reaches 1e3-1e6),
# and the adaptive solver would spend its steps on them.
LOG_P_BOUND = 100.0


async def _samples_log_p(
    state: AppState, model: ReadyModel, job: Job, count: int, request: Request | None
) -> tuple[np.ndarray | None, str | None]:
    """The samples' log-density under the model: density's own tracked values, or the exact
    ODE likelihood of the first `count` finite samples, queued on the likelihood thread and
    stopped at the request's deadline (504) or when its client goes away."""
    if job.log_p is not None:
        return job.log_p[np.isfinite(job.log_p)], "tracked"
    points = job.samples[np.isfinite(job.samples).all(axis=1)]
    points = points[(np.abs(points) <= LOG_P_BOUND).all(axis=1)][:count]
    if not count or not len(points):
        return None, None
    result = await log_likelihood(
        state, model, points.astype(np.float64), False, _left(job), request
    )
    return result.log_density[result.finite], "ode"


@router.post(
    "/evaluate",
    response_model=EvaluateResponse,
    dependencies=[Depends(require_json)],
    responses=error_responses(400, 413, 415, 422, 503, 504),
)
async def evaluate(body: EvaluateRequest, request: Request, state: StateDep) -> EvaluateResponse:
    """KL (bits) of n fresh samples against the dataset, with timing; sets the KL gauges."""
    done = await run_job(request, state, body, body.n, state.settings.max_eval_n)
    return await scored(state, body, done, request=request)


async def scored(
    state: AppState,
    body: EvaluateRequest,
    done: Finished,
    *,
    with_nll: bool = True,
    gauges: bool = True,
    request: Request | None = None,
) -> EvaluateResponse:
    """The /evaluate answer for finished samples. A sweep's cell (`gauges` False) leaves the
    dashboards' KL gauges to the default models' own evaluations, and skips the held-out
    likelihood (`with_nll` False) unless its metrics ask for it. The likelihoods keep the
    request's deadline: past it a 504, and a solve of its own stops."""
    job, model = done.job, done.served.model
    result = SampleResult(
        job.samples,
        job.nonfinite,
        job.compute_seconds,
        job.plan.guider.name,
        job.plan.scale,
        done.seed,
        model.name,
        job.plan.sampler.name,
        job.plan.steps,
        job.plan.evaluations,
    )
    ev = await run_in_threadpool(score, model, result, body.k)
    label = job.plan.label
    by_class = None
    if has_class_metrics(model, label):
        by_class = await run_in_threadpool(class_scores, model, job.samples, label, body.k)
        by_class = {
            k: _or_none(v) if isinstance(v, float) else v for k, v in vars(by_class).items()
        }
    sampler = job.plan.sampler.name
    held_out = await heldout(state, model, _left(job)) if with_nll else None
    nll = held_out.nll_bits if held_out is not None else None
    exact = ev.exact
    if gauges:
        state.metrics.on_exact(body.dataset, model.name, ev.variant, sampler, exact)
    if gauges and nll is not None and body.model is None and model.objective == "plain":
        state.metrics.on_nll(body.dataset, nll)
    kl = None if math.isnan(ev.kl_bits) else ev.kl_bits
    if gauges and kl is not None and body.model is None and label is None:
        # the gauges (and the KL alert) follow the default models' unconditional samples only
        state.metrics.on_evaluated(body.dataset, ev.variant, sampler, kl, ev.seconds_per_sample)
        state.metrics.on_coverage(body.dataset, ev.variant, sampler, ev.precision, ev.recall)
    log_p, method = await _samples_log_p(state, model, job, body.log_p_samples, request)
    if gauges and log_p is not None and len(log_p) and body.model is None:
        state.metrics.on_log_p(body.dataset, ev.variant, sampler, float(log_p.mean()))
    state.metrics.on_sampled(
        body.dataset,
        ev.variant,
        sampler,
        job.n,
        job.nonfinite,
        job.queue_seconds,
        job.compute_seconds,
        job.priority,
    )
    return EvaluateResponse(
        kl_bits=kl,
        precision=_or_none(ev.precision),
        recall=_or_none(ev.recall),
        mean_log_p=float(log_p.mean()) if log_p is not None and len(log_p) else None,
        mean_log_p_method=method,
        mean_log_p_n=0 if log_p is None else len(log_p),
        target_log_p=job.plan.final_target,
        gradient=job.plan.gradient,
        nll_bits=nll,
        nonfinite_fraction=ev.nonfinite_fraction,
        nonfinite=ev.nonfinite,
        sampling_seconds=ev.sampling_seconds,
        seconds_per_sample=ev.seconds_per_sample,
        n=ev.n,
        k=ev.k,
        dataset=body.dataset,
        variant=ev.variant,
        scale=ev.scale,
        seed=done.seed,
        steps=done.steps,
        sampler=sampler,
        spacing=job.plan.spacing,
        sampler_params=job.plan.sampler_params,
        evaluations=job.plan.evaluations,
        model=model.id,
        model_name=model.name,
        label=label,
        guided_evaluations=job.plan.guided_evaluations,
        guidance_schedule=job.plan.schedule,
        guider_params=job.plan.guider_params,
        class_metrics=by_class,
        exact=ExactMetrics(
            **{k: _or_none(v) if isinstance(v, float) else v for k, v in exact.as_dict().items()},
            forward_kl_bits=None if held_out is None else held_out.forward_kl_bits,
            forward_kl_se_bits=None if held_out is None else held_out.forward_kl_se_bits,
        ),
        timing={
            "queue_s": job.queue_seconds,
            "compute_s": job.compute_seconds,
            "total_s": done.total_s,
        },
    )
