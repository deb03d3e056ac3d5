"""One error shape for every 4xx/5xx: {"detail": ...}; validation errors name field and range.

A validation error never repeats the client's input at length: a reply built from the input
is an amplifier (a 50 MB body once came back as a 52 MB 422) and a lone surrogate in it cannot
be encoded as UTF-8 (it made a 500). So every string taken from the input (field names in
`loc`, `msg`, an echoed `input`) is bounded and made encodable, only short scalars are echoed,
and at most MAX_ERRORS errors are listed.
"""

from __future__ import annotations

import functools
import math
import typing
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

MAX_ERRORS = 20
MAX_ECHO = 64  # characters of a string input, field name or integer echoed back
MAX_MSG = 300


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
        [
            {
                "loc": ["body", *field.split(".")],
                "msg": message,
                "type": "value_error",
                "allowed": allowed,
            }
        ],
    )


def safe_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters (marked with '...') and encodable as UTF-8."""
    if len(text) > limit:
        text = f"{text[: limit - 3]}..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _echo(value: Any) -> Any | None:
    """The input worth echoing: a short scalar; None for anything else."""
    if isinstance(value, bool) or (isinstance(value, float) and math.isfinite(value)):
        return value  # NaN/inf excluded: JSON cannot carry them
    if isinstance(value, int) and abs(value) < 10**MAX_ECHO:
        return value
    if isinstance(value, str) and len(value) <= MAX_ECHO:
        return safe_text(value, MAX_ECHO)
    return None


@functools.cache
def _properties(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema().get("properties", {})


def allowed_values(model: type[BaseModel] | None, field: str) -> str | None:
    """The allowed range or set of a request field, read off its JSON schema."""
    if model is None:
        return None
    props = _properties(model)
    if field not in props:
        names = sorted(props)
        return f"known fields: {names}"
    spec = props[field]
    options = spec.get("anyOf", [spec])
    parts = []
    for opt in options:
        if "enum" in opt:
            parts.append(f"one of {opt['enum']}")
        if "pattern" in opt:
            parts.append(
                f"{opt.get('minLength', 0)}..{opt.get('maxLength')} characters "
                f"matching {opt['pattern']}"
            )
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


def _submodel(model: type[BaseModel] | None, field: str) -> type[BaseModel] | None:
    """The request object a field holds (through Optional), or None."""
    info = None if model is None else model.model_fields.get(field)
    if info is None:
        return None
    for kind in (info.annotation, *typing.get_args(info.annotation)):
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
    return None


def error_item(err: dict[str, Any], model: type[BaseModel] | None) -> dict[str, Any]:
    loc = [p if isinstance(p, int) else safe_text(str(p), MAX_ECHO) for p in err.get("loc", ())]
    item: dict[str, Any] = {
        "loc": loc,
        "msg": safe_text(str(err.get("msg", "")), MAX_MSG),
        "type": safe_text(str(err.get("type", "")), MAX_ECHO),
    }
    raw_loc = err.get("loc", ())
    if len(raw_loc) >= 2 and raw_loc[0] == "body" and isinstance(raw_loc[1], str):
        owner, name = model, raw_loc[1]
        for part in raw_loc[2:]:  # into a nested request object (guider_params.momentum)
            inner = _submodel(owner, name)
            if inner is None or not isinstance(part, str):
                break
            owner, name = inner, part
        allowed = allowed_values(owner, name)
        if allowed:
            item["allowed"] = allowed
    echo = _echo(err.get("input"))
    if echo is not None:
        item["input"] = echo
    return item


def validation_handler(schemas: dict[str, type[BaseModel]]):
    async def handle(request: Request, exc: RequestValidationError) -> JSONResponse:
        model = schemas.get(request.url.path)
        errors = list(exc.errors())
        detail = [error_item(err, model) for err in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            more = len(errors) - MAX_ERRORS
            detail.append(
                {"loc": ["body"], "msg": f"and {more} more errors", "type": "too_many_errors"}
            )
        return JSONResponse({"detail": detail}, status_code=422)

    return handle


async def api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)
