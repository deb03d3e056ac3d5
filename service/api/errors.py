"""One error shape for every 4xx/5xx: {"detail": ...}; validation errors name field and range."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class ApiError(Exception):
    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def field_error(field: str, message: str, allowed: str) -> ApiError:
    """A 422 in FastAPI's own shape, for checks that depend on settings or on the model."""
    return ApiError(
        422,
        [{"loc": ["body", field], "msg": message, "type": "value_error", "allowed": allowed}],
    )


def allowed_values(model: type[BaseModel] | None, field: str) -> str | None:
    """The allowed range or set of a request field, read off its JSON schema."""
    if model is None:
        return None
    props = model.model_json_schema().get("properties", {})
    if field not in props:
        names = sorted(props)
        return f"known fields: {names}"
    spec = props[field]
    options = spec.get("anyOf", [spec])
    parts = []
    for opt in options:
        if "enum" in opt:
            parts.append(f"one of {opt['enum']}")
        lo = opt.get("minimum", opt.get("exclusiveMinimum"))
        hi = opt.get("maximum", opt.get("exclusiveMaximum"))
        if lo is not None or hi is not None:
            lo_op = "<" if "exclusiveMinimum" in opt else "<="
            hi_op = "<" if "exclusiveMaximum" in opt else "<="
            left = f"{lo} {lo_op} " if lo is not None else ""
            right = f" {hi_op} {hi}" if hi is not None else ""
            finite = ", finite" if opt.get("type") == "number" else ""
            parts.append(f"{left}{field}{right}{finite}")
    return "; ".join(parts) or None


def validation_handler(schemas: dict[str, type[BaseModel]]):
    async def handle(request: Request, exc: RequestValidationError) -> JSONResponse:
        model = schemas.get(request.url.path)
        detail = []
        for err in exc.errors():
            loc = list(err.get("loc", ()))
            item = {"loc": loc, "msg": err.get("msg"), "type": err.get("type")}
            if len(loc) >= 2 and loc[0] == "body" and isinstance(loc[1], str):
                allowed = allowed_values(model, loc[1])
                if allowed:
                    item["allowed"] = allowed
            value = err.get("input")
            # echo simple inputs back, but never NaN/inf: JSON cannot carry them
            if isinstance(value, str | int | bool) or (
                isinstance(value, float) and math.isfinite(value)
            ):
                item["input"] = value
            detail.append(item)
        return JSONResponse({"detail": detail}, status_code=422)

    return handle


async def api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)
