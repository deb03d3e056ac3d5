"""create_app(settings): the FastAPI app, its lifespan (load, verify, warm up) and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline

from service.api.body_guard import BodyLimitMiddleware
from service.api.errors import ApiError, api_error_handler, validation_handler
from service.api.metrics import Metrics
from service.api.openapi_limits import served_openapi
from service.api.routes import (
    admin,
    catalog,
    evaluate,
    exact,
    health,
    loglik,
    sample,
    stream,
    sweeps,
    ui,
)
from service.api.schemas import EvaluateRequest, SampleRequest, StreamRequest
from service.api.settings import Settings
from service.api.state import AppState, load_registry
from service.api.sweep_schemas import SweepRequest
from service.api.sweeps_setup import start_sweeps, stop_sweeps
from service.api.timing import TimingMiddleware
from service.core.device import pick_device
from service.serving.engine import Engine
from service.serving.job import BatcherStopped

log = logging.getLogger(__name__)


async def _load_models(state: AppState) -> None:
    """Start-up loading runs in a thread, so /healthz answers (and /readyz says 503) meanwhile."""
    try:
        state.registry = await load_registry(state)
    except Exception as e:  # an unreadable store must not take the process down
        log.exception("loading the model store failed")
        state.load_error = f"{type(e).__name__}: {e}"
    state.ready = True


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState(
            settings, metrics, pick_device(settings.device), Engine(settings.torch_threads).start()
        )
        app.state.dgs = state
        metrics.work_ahead.set_function(lambda: state.admission.work_ahead_s)
        metrics.loglik_work_ahead.set_function(lambda: state.loglik_admission.work_ahead_s)
        loading = asyncio.create_task(_load_models(state))
        runner = await start_sweeps(state)
        yield
        await stop_sweeps(state, runner)  # before the engine stops: its cells are handed back
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        # uvicorn has waited for open requests; any still held are told, not left hanging
        state.loglik_pool.shutdown(wait=False, cancel_futures=True)
        state.engine.stop()  # first: no step may run while the batchers answer their jobs
        state.engine.close_all(BatcherStopped("the server is shutting down"))

    # fastapi-offline serves /docs and /redoc with the Swagger UI and ReDoc it ships: no CDN
    app = FastAPIOffline(
        static_url="/docs-assets",
        # no call to the public validator service for the badge
        swagger_ui_parameters={"validatorUrl": None},
        title="density-guidance-service",
        version="0.1.0",
        summary="Sampling 2D diffusion models under density guidance, batched step by step.",
        lifespan=lifespan,
    )
    app.add_exception_handler(
        RequestValidationError,
        validation_handler(
            {
                "/sample": SampleRequest,
                "/sample/stream": StreamRequest,
                "/evaluate": EvaluateRequest,
                "/sweeps": SweepRequest,
            }
        ),
    )
    app.add_exception_handler(ApiError, api_error_handler)
    routers = (ui, sample, stream, evaluate, sweeps, loglik, catalog, exact, health, admin)
    for router in (r.router for r in routers):
        app.include_router(router)
    app.openapi = served_openapi(app, settings)
    # the last added runs first: a refused body (413) is still timed
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(TimingMiddleware, metrics=metrics)
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
    )
