"""POST /sample: samples as JSON (non-finite -> null) or as a float32 .npy body."""

from __future__ import annotations

import io

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request, Response

from service.api.body_guard import require_json
from service.api.schemas import SampleRequest, SampleResponse, error_responses
from service.api.state import AppState, StateDep
from service.api.submission import Finished, run_job
from service.core.classes import CLASS_SPECS, class_names

router = APIRouter(tags=["sampling"])
NPY = "application/x-npy"
NPY_HEADERS = {
    f"x-{name}": {"description": what, "schema": {"type": "string"}}
    for name, what in {
        "n": "Rows of the array.",
        "dataset": "The dataset.",
        "variant": "The guidance variant.",
        "scale": "The guidance scale used.",
        "seed": "The seed used.",
        "steps": "Reverse steps taken.",
        "sampler": "The sampler.",
        "spacing": "The timesteps' spacing.",
        "sampler-params": "The sampler's parameters used, as name=value,...",
        "evaluations": "Network evaluations per sample (NFE).",
        "model": "The model's id.",
        "model-name": "The model's name.",
        "nonfinite": "Rows with a non-finite coordinate (left as NaN/inf).",
        "gradient": "The density gradient of a paper variant (absent for others).",
        "target-log-p": "Variant density: the log-density steered to (nats).",
        "priority": "The class the request ran in: interactive or batch.",
        "class": "Class-conditional models: the class sampled (index).",
        "class-name": "Its name.",
        "guide-model": "autoguidance: the guide's name.",
        "guidance-interval": "Weighted variants: sigma_lo,sigma_hi.",
        "guidance-schedule": "Weighted variants: the weight's schedule over sigma.",
        "guider-params": "The variant's parameters used, as name=value,...",
        "guided-evaluations": "Evaluations that ran the variant's reference pass too.",
        "queue-s": "Submission to first denoising step, seconds.",
        "compute-s": "First denoising step to last, seconds.",
        "total-s": "Arrival to response, seconds.",
    }.items()
}


def _meta(done: Finished, body: SampleRequest) -> dict:
    job = done.job
    return {
        "n": job.n,
        "dataset": body.dataset,
        "variant": job.plan.guider.name,
        "scale": job.plan.scale,
        "seed": done.seed,
        "steps": done.steps,
        "sampler": job.plan.sampler.name,
        "spacing": job.plan.spacing,
        "sampler_params": job.plan.sampler_params,
        "evaluations": job.plan.evaluations,
        "model": done.served.model.id,
        "model_name": done.served.name,
        "nonfinite": job.nonfinite,
        "gradient": job.plan.gradient,
        "target_log_p": job.plan.final_target,
        "priority": job.priority,
        **class_meta(done),
        "timing": {
            "queue_s": round(job.queue_seconds, 6),
            "compute_s": round(job.compute_seconds, 6),
            "total_s": round(done.total_s, 6),
        },
    }


def class_meta(done: Finished) -> dict:
    """The class-conditional fields: the class, the guide, the interval, the reference passes."""
    plan, model = done.job.plan, done.served.model
    names = class_names(model.dataset) if model.num_classes and model.dataset in CLASS_SPECS else ()
    return {
        "class": plan.label,
        "class_name": None if plan.label is None or not names else names[plan.label],
        "guide_model": None if plan.guide is None else plan.guide.name,
        "guidance_interval": None if plan.interval is None else list(plan.interval),
        "guidance_schedule": plan.schedule,
        "guider_params": plan.guider_params,
        "guided_evaluations": plan.guided_evaluations,
    }


@router.post(
    "/sample",
    response_model=SampleResponse,
    dependencies=[Depends(require_json)],
    responses={
        200: {
            "content": {NPY: {"schema": {"type": "string", "format": "binary"}}},
            "description": f"JSON; with `Accept: {NPY}`, a float32 (n, 2) .npy array, "
            "its metadata in x-* headers",
            "headers": NPY_HEADERS,
        },
        **error_responses(400, 413, 415, 422, 503, 504),
    },
)
async def sample(body: SampleRequest, request: Request, state: StateDep) -> Response:
    """Draw n samples with a guidance variant; batched with concurrent requests step by step."""
    done = await run_job(request, state, body, body.n, state.settings.max_n)
    job, meta = done.job, _meta(done, body)
    record(state, done, body)
    if NPY in request.headers.get("accept", ""):
        buf = io.BytesIO()
        np.save(buf, job.samples.astype(np.float32, copy=False), allow_pickle=False)
        headers = {
            f"x-{k.replace('_', '-')}": _header(v)
            for k, v in meta.items()
            if k != "timing" and v is not None and v != {}
        }
        headers.update({f"x-{k.replace('_', '-')}": str(v) for k, v in meta["timing"].items()})
        return Response(buf.getvalue(), media_type=NPY, headers=headers)
    return Response(sample_json(done, body), media_type="application/json")


def _header(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def record(state: AppState, done: Finished, body: SampleRequest) -> None:
    job = done.job
    state.metrics.on_sampled(
        body.dataset,
        job.plan.guider.name,
        job.plan.sampler.name,
        job.n,
        job.nonfinite,
        job.queue_seconds,
        job.compute_seconds,
        job.priority,
    )


def sample_json(done: Finished, body: SampleRequest) -> bytes:
    """/sample's JSON body (also the stream's `result` event)."""
    job = done.job
    # orjson writes the float32 array directly and turns NaN/inf into null.
    body_json = {"samples": job.samples, "log_p": job.log_p, **_meta(done, body)}
    return orjson.dumps(body_json, option=orjson.OPT_SERIALIZE_NUMPY)
