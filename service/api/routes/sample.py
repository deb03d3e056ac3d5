"""POST /sample: samples as JSON (non-finite -> null) or as a float32 .npy body."""

from __future__ import annotations

import io

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from service.api.schemas import ErrorResponse, SampleRequest, SampleResponse
from service.api.state import StateDep
from service.api.submission import Finished, run_job

router = APIRouter(tags=["sampling"])
NPY = "application/x-npy"


def _meta(done: Finished, body: SampleRequest) -> dict:
    job = done.job
    return {
        "n": job.n,
        "dataset": body.dataset,
        "variant": job.plan.variant.name,
        "scale": job.plan.scale,
        "seed": done.seed,
        "steps": done.steps,
        "model": done.served.model.sha256,
        "model_name": done.served.name,
        "nonfinite": job.nonfinite,
        "timing": {
            "queue_s": round(job.queue_seconds, 6),
            "compute_s": round(job.compute_seconds, 6),
            "total_s": round(done.total_s, 6),
        },
    }


@router.post(
    "/sample",
    response_model=SampleResponse,
    responses={
        200: {"content": {NPY: {}}, "description": "JSON, or float32 (n, 2) .npy on Accept"},
        422: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
        504: {"model": ErrorResponse},
    },
)
async def sample(body: SampleRequest, request: Request, state: StateDep) -> Response:
    """Draw n samples with a guidance variant; batched with concurrent requests step by step."""
    done = await run_job(request, state, body, body.n, state.settings.max_n)
    job, meta = done.job, _meta(done, body)
    state.metrics.on_sampled(
        body.dataset, meta["variant"], job.n, job.nonfinite, job.queue_seconds, job.compute_seconds
    )
    if NPY in request.headers.get("accept", ""):
        buf = io.BytesIO()
        np.save(buf, job.samples.astype(np.float32, copy=False), allow_pickle=False)
        headers = {f"x-{k.replace('_', '-')}": str(v) for k, v in meta.items() if k != "timing"}
        headers.update({f"x-{k.replace('_', '-')}": str(v) for k, v in meta["timing"].items()})
        return Response(buf.getvalue(), media_type=NPY, headers=headers)
    # orjson writes the float32 array directly and turns NaN/inf into null.
    payload = orjson.dumps({"samples": job.samples, **meta}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(payload, media_type="application/json")
