"""ASGI middleware that times every request into sampler_request_duration_seconds.

Pure ASGI rather than BaseHTTPMiddleware, so client disconnects still reach the routes.
Routes put the request's dataset and variant in request.state; the labels accept only
known names (metrics.label_*), never user strings.
"""

from __future__ import annotations

import contextlib
import time

from service.api.metrics import (
    ENDPOINTS,
    NONE,
    Metrics,
    label_dataset,
    label_priority,
    label_sampler,
    label_variant,
)

PATHS = {
    "/sample": "sample",
    "/sample/stream": "sample_stream",
    "/": "ui",
    "/evaluate": "evaluate",
    "/variants": "variants",
    "/samplers": "samplers",
    "/loglik": "loglik",
    "/models": "models",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/admin/reload": "reload",
}
PREFIXES = {"/datasets/": "datasets"}  # paths with a parameter: a label per route, not per path
assert set(PATHS.values()) | set(PREFIXES.values()) <= set(ENDPOINTS)


def endpoint_of(path: str) -> str | None:
    if path in PATHS:
        return PATHS[path]
    return next((name for prefix, name in PREFIXES.items() if path.startswith(prefix)), None)


class TimingMiddleware:
    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        endpoint = endpoint_of(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            state = scope.get("state", {})
            with contextlib.suppress(Exception):  # a failing metric never fails a request
                self.metrics.on_request(
                    endpoint,
                    label_dataset(state.get("dataset", NONE)),
                    label_variant(state.get("variant", NONE)),
                    label_sampler(state.get("sampler", NONE)),
                    label_priority(state.get("priority", NONE)),
                    status["code"],
                    time.perf_counter() - start,
                )
