"""A sweep's cells as /evaluate requests: the grid checked cell by cell (each error named with
its field and index), the work predicted, and one cell run through the batcher and scored."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from service.api.errors import MAX_ERRORS, ApiError, error_item, field_error, safe_text
from service.api.routes.evaluate import scored
from service.api.schemas import LOG_P_SAMPLES_DEFAULT, EvaluateRequest
from service.api.state import AppState
from service.api.submission import abandon, plan_for, result_of, submit_job
from service.api.sweep_schemas import GRID_FIELDS, METRICS, NOT_IN_GRID, SweepRequest
from service.serving.admission import Overloaded
from service.serving.job import BatcherStopped, QueueFull
from service.sweeps.grid import Cell, count, expand
from service.sweeps.runner import Busy, CellFailed
from service.sweeps.store import Claimed

# Fields whose one value is itself a list: in a grid they are always a list of such values.
LIST_VALUED = {"guidance_interval"}
# k-NN KL, precision/recall and the exact metrics of one sample, seconds (2-core CPU VM)
SCORE_S_PER_SAMPLE = 3e-5
NLL_METRICS = {"nll_bits", "exact.forward_kl_bits", "exact.forward_kl_se_bits"}


def _grid_error(field: str, index: int | None, message: str, allowed: str) -> dict[str, Any]:
    loc = ["body", "grid", safe_text(field, 64), *([] if index is None else [index])]
    return {"loc": loc, "msg": message, "type": "value_error", "allowed": allowed}


def normalised_grid(body: SweepRequest, max_cells: int) -> dict[str, Any]:
    """The grid with every field known and every list non-empty, or the 422 naming each
    problem; `log_p_samples` 0 unless the metrics ask for `mean_log_p` (the exact likelihood
    of samples is most of an /evaluate's time)."""
    errors = []
    for field in body.grid:
        if field in NOT_IN_GRID:
            errors.append(_grid_error(field, None, f"{field} is the sweep's", "seeds for seed"))
        elif field not in GRID_FIELDS:
            errors.append(_grid_error(field, None, "unknown field", f"one of {GRID_FIELDS}"))
    for i, name in enumerate(body.metrics):
        if name not in METRICS:
            errors.append(
                {
                    "loc": ["body", "metrics", i],
                    "msg": "unknown metric",
                    "type": "value_error",
                    "allowed": f"one of {METRICS}",
                }
            )
    grid = {}
    for field, value in body.grid.items():
        if field in LIST_VALUED and isinstance(value, list) and value:
            value = value if isinstance(value[0], list) else [value]
        if isinstance(value, list) and not value:
            errors.append(_grid_error(field, None, "an empty list", "a value or 1+ values"))
        grid[field] = value
    if errors:
        raise ApiError(422, errors[:MAX_ERRORS])
    if "log_p_samples" not in grid:
        grid["log_p_samples"] = LOG_P_SAMPLES_DEFAULT if "mean_log_p" in body.metrics else 0
    cells = count(grid, body.seed_list())
    if cells > max_cells:
        raise field_error(
            "grid", f"the grid makes {cells} cells (with its seeds)", f"1 <= cells <= {max_cells}"
        )
    return grid


def checked_cells(grid: dict[str, Any], seeds: list[int]) -> list[tuple[Cell, EvaluateRequest]]:
    """Every cell validated as an /evaluate request; a bad value is named by its field and its
    index in that field's list."""
    out, errors, seen = [], [], set()
    for cell in expand(grid, seeds):
        try:
            out.append((cell, EvaluateRequest.model_validate(cell.request)))
        except ValidationError as e:
            for err in e.errors():
                field = str(err["loc"][0]) if err["loc"] else "grid"
                index = cell.choice.get(field)
                key = (field, index)
                if key in seen:
                    continue
                seen.add(key)
                item = error_item({**err, "loc": ("body", *err["loc"])}, EvaluateRequest)
                _, name, *rest = item["loc"]
                item["loc"] = ["body", "grid", name, *([] if index is None else [index]), *rest]
                errors.append(item)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ApiError(422, errors[:MAX_ERRORS])
    return out


def stored_request(body: EvaluateRequest) -> dict[str, Any]:
    """The cell's full request as /evaluate takes it: rerun it there for the same numbers."""
    return body.model_dump(mode="json", by_alias=True, exclude_none=True)


async def predicted_seconds(
    state: AppState, cells: list[tuple[Cell, EvaluateRequest]], with_nll: bool
) -> float:
    """Each config planned on its model (a plan's refusal is a 422 naming the field and the
    index) and costed with that model's measured step cost; every seed costs the same."""
    total, planned = 0.0, {}
    rows_per_step, max_n = state.settings.request_row_cap, state.settings.max_eval_n
    for cell, body in cells:
        if cell.config not in planned:
            if body.n > max_n:
                index = cell.choice.get("n")
                raise ApiError(
                    422,
                    [
                        _grid_error(
                            "n",
                            index,
                            f"n must be at most {max_n} on this server",
                            f"6 <= n <= {max_n}",
                        )
                    ],
                )
            try:
                served, plan = await plan_for(state, body, body.n, 0)
            except ApiError as e:
                if e.status != 422:
                    raise
                for item in e.detail:
                    field = item["loc"][1] if len(item["loc"]) > 1 else "grid"
                    index = cell.choice.get(field)
                    item["loc"] = ["body", "grid", field, *([] if index is None else [index])]
                raise
            cost = served.batcher.cost
            planned[cell.config] = cost.request(
                body.n, plan.evaluations, plan.needs_gradient, rows_per_step
            ) + body.n * SCORE_S_PER_SAMPLE * (2 if body.log_p_samples else 1)
        total += planned[cell.config]
    return total


async def evaluate_cell(state: AppState, cell: Claimed) -> dict[str, Any]:
    """Run one cell at batch priority through its model's batcher and score it; -> the
    /evaluate answer, or CellFailed (recorded, the sweep goes on) or Busy (handed back)."""
    s = state.settings
    request = {**cell.request, "priority": "batch", "deadline_s": s.max_deadline_s}
    try:
        body = EvaluateRequest.model_validate(request)
    except ValidationError as e:  # e.g. a newer server's stricter limits than the sweep's
        raise CellFailed(f"the cell is no longer a valid request: {_short(e)}") from e
    try:
        sub = await submit_job(None, state, body, body.n, s.max_eval_n)
    except ApiError as e:
        cause = e.__cause__
        if isinstance(cause, Overloaded | QueueFull):
            raise Busy(cause.retry_after_s) from e
        if isinstance(cause, BatcherStopped) or e.detail == "models are still loading":
            raise Busy(1.0) from e
        raise CellFailed(_detail(e)) from e
    try:
        await asyncio.shield(sub.future)
        done = result_of(sub)
    except ApiError as e:
        raise CellFailed(_detail(e)) from e
    finally:
        abandon(sub)
    with_nll = bool(NLL_METRICS & set(cell.metrics))
    try:  # its likelihoods keep the cell's deadline: past it, a failed cell saying so
        answer = await scored(state, body, done, with_nll=with_nll, gauges=False)
    except ApiError as e:
        raise CellFailed(_detail(e)) from e
    if answer.kl_bits is None:
        raise CellFailed(
            f"{answer.nonfinite} of {answer.n} samples are non-finite: too few for the KL"
        )
    return answer.model_dump(mode="json", by_alias=True)


def _detail(e: ApiError) -> str:
    if isinstance(e.detail, list):
        return "; ".join(f"{'.'.join(map(str, d['loc'][1:]))}: {d['msg']}" for d in e.detail)
    return str(e.detail)


def _short(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()[:3])
