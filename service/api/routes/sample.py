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
        "evaluations": "Network evaluations per sample (NFE).",
        "model": "The model's id.",
        "model-name": "The model's name.",
        "nonfinite": "Rows with a non-finite coordinate (left as NaN/inf).",
        "gradient": "The density gradient of a paper variant (absent for others).",
        "target-log-p": "Variant density: the log-density steered to (nats).",
        "priority": "The class the request ran in: interactive or batch.",
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
        "variant": job.plan.variant.name,
        "scale": job.plan.scale,
        "seed": done.seed,
        "steps": done.steps,
        "sampler": job.plan.sampler.name,
        "evaluations": job.plan.evaluations,
        "model": done.served.model.id,
        "model_name": done.served.name,
        "nonfinite": job.nonfinite,
        "gradient": job.plan.gradient,
        "target_log_p": job.plan.final_target,
        "priority": job.priority,
        "timing": {
            "queue_s": round(job.queue_seconds, 6),
            "compute_s": round(job.compute_seconds, 6),
            "total_s": round(done.total_s, 6),
        },
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
            f"x-{k.replace('_', '-')}": str(v)
            for k, v in meta.items()
            if k != "timing" and v is not None
        }
        headers.update({f"x-{k.replace('_', '-')}": str(v) for k, v in meta["timing"].items()})
        return Response(buf.getvalue(), media_type=NPY, headers=headers)
    return Response(sample_json(done, body), media_type="application/json")


def record(state: AppState, done: Finished, body: SampleRequest) -> None:
    job = done.job
    state.metrics.on_sampled(
        body.dataset,
        job.plan.variant.name,
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
