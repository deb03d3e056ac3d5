"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.schemas import ReadyResponse
from service.api.state import StateDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Not ready yet, or nothing loaded."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    """200 once models are loaded and warmed up (at least one); 503 before, naming why."""
    reg = state.registry
    body = {
        "ready": state.ready and bool(reg.models),
        "models": sorted(reg.models),
        "unavailable": reg.failures,
        "datasets": reg.datasets(),
    }
    if state.load_error:
        body["error"] = state.load_error
    if state.sweeps_error:  # sweeps are part of what this server promises
        body["ready"] = False
        body["error"] = "; ".join(filter(None, [body.get("error"), state.sweeps_error]))
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format.",
        }
    },
)
async def metrics(state: StateDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
