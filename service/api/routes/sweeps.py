"""/sweeps: grids of /evaluate cells, run by every replica's sweep runner, kept in the database."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response, StreamingResponse

from service.api.body_guard import require_json
from service.api.errors import ApiError
from service.api.routes.stream import sse
from service.api.schemas import error_responses
from service.api.state import AppState, StateDep
from service.api.sweep_cells import (
    NLL_METRICS,
    checked_cells,
    normalised_grid,
    predicted_seconds,
    stored_request,
)
from service.api.sweep_schemas import GRID_FIELDS, METRICS, SweepCreated, SweepRequest, SweepStatus
from service.sweeps.grid import listed
from service.sweeps.runner import SweepRunner
from service.sweeps.stats import metric, summary

router = APIRouter(tags=["sweeps"])
SweepId = Annotated[
    str, Path(pattern="^[0-9a-f]{32}$", description="A sweep's id, from POST /sweeps.")
]
STREAM_EVERY_S = 0.5


def _runner(state: AppState) -> SweepRunner:
    if state.sweeps is None:
        raise ApiError(503, state.sweeps_error or "sweeps are not available", {"Retry-After": "30"})
    return state.sweeps


async def _sweep(runner: SweepRunner, sweep_id: str) -> dict[str, Any]:
    found = await runner.db(runner.store.sweep, sweep_id)
    if not found:
        raise ApiError(404, "no such sweep (GET /sweeps lists them)")
    return found


@router.get("/sweeps/fields")
async def sweep_fields() -> dict[str, list[str]]:
    """The fields a grid may list and the metrics a sweep may report."""
    return {"grid": GRID_FIELDS, "metrics": METRICS}


@router.post(
    "/sweeps",
    status_code=202,
    response_model=SweepCreated,
    dependencies=[Depends(require_json)],
    responses=error_responses(400, 413, 415, 422, 503),
)
async def create_sweep(body: SweepRequest, state: StateDep) -> SweepCreated:
    """Queue a grid of /evaluate cells; 202 with its id, cell count and predicted seconds."""
    s, runner = state.settings, _runner(state)
    grid = normalised_grid(body, s.sweep_max_cells)
    cells = checked_cells(grid, body.seed_list())
    predicted = await predicted_seconds(state, cells, bool(NLL_METRICS & set(body.metrics)))
    if predicted > s.sweep_max_work_s:
        raise ApiError(
            422,
            [
                {
                    "loc": ["body", "grid"],
                    "msg": f"the grid is about {predicted:.0f} s of work on this server",
                    "type": "value_error",
                    "allowed": f"at most {s.sweep_max_work_s:g} s of predicted work",
                }
            ],
        )
    active, work = await runner.db(runner.store.in_hand)
    if active >= s.sweep_max_active or work + predicted > s.sweep_max_work_s:
        # the work in hand falls about one second a second (one replica's view)
        wait = work + predicted - s.sweep_max_work_s if active < s.sweep_max_active else work
        retry = int(min(3600, max(1, math.ceil(wait / max(active, 1)))))
        raise ApiError(
            503,
            f"{active} sweeps with about {work:.0f} s of work are in hand (limits: "
            f"{s.sweep_max_active} sweeps, {s.sweep_max_work_s:g} s); retry after {retry} s",
            {"Retry-After": str(retry)},
        )
    spec = {
        "grid": grid,
        "seeds": body.seed_list(),
        "metrics": body.metrics,
        "columns": listed(grid),
    }
    requests = [stored_request(request) for _, request in cells]
    configs = [cell.config for cell, _ in cells]
    sweep_id = await runner.db(runner.store.create, spec, requests, configs, predicted, body.name)
    runner.wake()
    return SweepCreated(
        id=sweep_id,
        cells=len(cells),
        configs=len(set(configs)),
        predicted_s=predicted,
        state="running",
        links={
            "status": f"/sweeps/{sweep_id}",
            "results": f"/sweeps/{sweep_id}/results",
            "events": f"/sweeps/{sweep_id}/events",
        },
    )


def _status(found: dict[str, Any], rows: list[dict[str, Any]] | None) -> SweepStatus:
    counts = found["counts"]
    end = found["finished_at"] or time.time()
    return SweepStatus(
        id=found["id"],
        name=found["name"],
        state=found["state"],
        created_at=found["created_at"],
        finished_at=found["finished_at"],
        cells=found["total"],
        done=counts.get("done", 0),
        failed=counts.get("failed", 0),
        running=counts.get("running", 0),
        pending=counts.get("pending", 0),
        predicted_s=found["predicted_s"],
        elapsed_s=end - found["created_at"],
        spec=found["spec"],
        rows=rows,
    )


@router.get("/sweeps", response_model=list[SweepStatus])
async def list_sweeps(state: StateDep, limit: int = Query(100, ge=1, le=1000)) -> list[SweepStatus]:
    """The latest sweeps, newest first, with their progress."""
    runner = _runner(state)
    return [_status(f, None) for f in await runner.db(runner.store.sweeps, limit)]


@router.get(
    "/sweeps/{sweep_id}", response_model=SweepStatus, responses=error_responses(404, 422, 503)
)
async def get_sweep(sweep_id: SweepId, state: StateDep, rows: bool = True) -> SweepStatus:
    """A sweep's state and progress, and (unless rows=false) its finished cells' table rows."""
    runner = _runner(state)
    found = await _sweep(runner, sweep_id)
    table = None
    if rows:
        cells = await runner.db(runner.store.cells, sweep_id, True)
        table = table_rows(found["spec"], cells)
    return _status(found, table)


def table_rows(spec: dict[str, Any], cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row a cell: where it sits in the grid, its outcome, its metrics and full request."""
    out = []
    for c in cells:
        row = {
            "cell": c["idx"],
            "config": c["config"],
            **{k: c["request"].get(k) for k in spec["columns"]},
            "seed": c["request"].get("seed"),
            "state": c["state"],
            **{m: metric(c["result"], m) for m in spec["metrics"]},
            "error": c["error"],
            "model": c["model"],
            "seconds": c["seconds"],
            "attempts": c["attempts"],
            "finished_by": c["finished_by"],
            "request": c["request"],
        }
        out.append(row)
    return out


def _csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
        )
    return buffer.getvalue()


@router.get(
    "/sweeps/{sweep_id}/results",
    responses={
        **error_responses(404, 422, 503),
        200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}},
    },
)
async def sweep_results(
    sweep_id: SweepId,
    state: StateDep,
    format: Literal["json", "csv"] = "json",
    table: Literal["cells", "summary"] = "cells",
) -> Response:
    """The table: one row a cell, or (table=summary) one a config with each metric's mean over
    seeds and its 95% interval (`<metric>_low`, `<metric>_high`); as JSON (`summary`, and
    `rows` unless table=summary) or CSV."""
    runner = _runner(state)
    found = await _sweep(runner, sweep_id)
    spec = found["spec"]
    cells = await runner.db(runner.store.cells, sweep_id)
    rows = table_rows(spec, cells)
    summed = summary(cells, spec["columns"], spec["metrics"])
    if format == "csv":
        text = _csv(rows if table == "cells" else summed)
        name = f"sweep-{sweep_id[:8]}-{table}.csv"
        return Response(
            text,
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )
    answer = {"sweep": _status(found, None).model_dump(), "summary": summed}
    if table == "cells":  # a summary alone stays small for a sweep of thousands of cells
        answer["rows"] = rows
    return Response(json.dumps(answer), media_type="application/json")


@router.get(
    "/sweeps/{sweep_id}/events",
    response_class=StreamingResponse,
    responses={
        **error_responses(404, 422, 503),
        200: {"content": {"text/event-stream": {}}, "description": "progress, then end."},
    },
)
async def sweep_events(sweep_id: SweepId, state: StateDep) -> StreamingResponse:
    """Server-Sent Events: `progress` whenever a cell finishes (and once at the start), then
    `end` with the final status once the sweep is done or cancelled."""
    runner = _runner(state)
    await _sweep(runner, sweep_id)

    async def events() -> AsyncIterator[bytes]:
        last = None
        while True:
            found = await runner.db(runner.store.sweep, sweep_id)
            if found is None:
                yield sse("end", json.dumps({"id": sweep_id, "state": "deleted"}).encode())
                return
            status = _status(found, None).model_dump()
            key = (status["state"], status["done"], status["failed"], status["running"])
            if status["state"] != "running":
                yield sse("end", json.dumps(status).encode())
                return
            if key != last:
                yield sse("progress", json.dumps(status).encode())
                last = key
            await asyncio.sleep(STREAM_EVERY_S)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


@router.delete(
    "/sweeps/{sweep_id}", response_model=SweepStatus, responses=error_responses(404, 422, 503)
)
async def cancel_sweep(sweep_id: SweepId, state: StateDep, purge: bool = False) -> SweepStatus:
    """Cancel: unfinished cells are dropped (this replica's leave the batcher at once, other
    replicas' at their next lease renewal); finished cells stay unless purge=true."""
    runner = _runner(state)
    found = await _sweep(runner, sweep_id)
    await runner.db(runner.store.cancel, sweep_id, purge)
    runner.cancel_sweep(sweep_id)
    after = await runner.db(runner.store.sweep, sweep_id)
    return _status(after or {**found, "state": "deleted", "counts": {}}, None)
