"""The served OpenAPI document: the request models' hard ceilings narrowed to this server.

The pydantic models are built at import time, before any settings are read, so they carry the
ceilings of settings.py. What a given server accepts is narrower: MAX_N, MAX_EVAL_N and
MAX_DEADLINE_S; the datasets it has models for; and steps up to the largest T among those
models (a reload may change both, so the document is patched on every request for it, from
FastAPI's cached one).
A request valid against /openapi.json is then one the server's limits accept.

FastAPI writes every bound as a float, which turns the seed's maximum 2**63 - 1 into 2**63;
the request models' exact bounds are put back first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service.api.schemas import EvaluateRequest, SampleRequest, StreamRequest
from service.api.settings import Settings

REQUESTS = {
    "SampleRequest": SampleRequest,
    "StreamRequest": StreamRequest,
    "EvaluateRequest": EvaluateRequest,
}
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _options(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("anyOf", [spec])


def _exact_bounds(schemas: dict[str, Any]) -> None:
    for name, model in REQUESTS.items():
        exact = model.model_json_schema()["properties"]
        for field, spec in schemas[name]["properties"].items():
            for served, source in zip(_options(spec), _options(exact[field]), strict=True):
                served.update({k: source[k] for k in BOUNDS if k in source})


def _narrow(schemas: dict[str, Any], model: str, field: str, maximum: float) -> None:
    spec = schemas[model]["properties"][field]
    for option in _options(spec):
        if option.get("type") in ("integer", "number"):
            option["maximum"] = min(option.get("maximum", maximum), maximum)
    default = spec.get("default")
    if isinstance(default, int | float) and default > maximum:
        # e.g. n's default 1000 on a MAX_N=64 server: leaving n out is refused, so say so
        del spec["default"]
        schemas[model].setdefault("required", []).append(field)


def _loaded(app: FastAPI) -> list:
    state = getattr(app.state, "dgs", None)  # set by the lifespan; absent before start-up
    return [s.model for s in state.registry.models.values()] if state is not None else []


def served_openapi(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """A replacement for `app.openapi` (FastAPI's documented way to extend the document)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        doc = copy.deepcopy(generate())
        schemas = doc["components"]["schemas"]
        _exact_bounds(schemas)
        _narrow(schemas, "SampleRequest", "n", settings.max_n)
        _narrow(schemas, "StreamRequest", "n", settings.max_n)
        _narrow(schemas, "StreamRequest", "preview_rows", settings.max_preview_rows)
        _narrow(schemas, "EvaluateRequest", "n", settings.max_eval_n)
        loaded = _loaded(app)
        for model in ("SampleRequest", "StreamRequest", "EvaluateRequest"):
            _narrow(schemas, model, "deadline_s", settings.max_deadline_s)
            if loaded:  # before any model is loaded, the whole range
                _narrow(schemas, model, "steps", max(m.schedule.num_timesteps for m in loaded))
                datasets = schemas[model]["properties"]["dataset"]
                datasets["enum"] = sorted({m.dataset for m in loaded})
        return doc

    return openapi
