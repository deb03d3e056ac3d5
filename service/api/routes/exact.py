"""GET /datasets/{dataset}/density: a dataset's exact density, or a guider's intended target,
on a grid (the playground's contours; docs/DESIGN.md#10-ground-truth)."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import orjson
import torch
from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.api.errors import ApiError
from service.api.schemas import DatasetName
from service.core.classes import CLASS_SPECS, class_names
from service.core.exact.datasets import exact_density

router = APIRouter(tags=["catalog"])
BOUND = 6.0  # by default the grid spans [-6, 6]^2: room to normalise every dataset (view 4.5)
BOUND_RANGE = (1.0, 20.0)
W_RANGE = (0.0, 10.0)
# a target whose normalised density anywhere on the grid's border exceeds this has mass beyond
# the grid that could matter (the border's length times one unit of width: 1e-3): the grid
# cannot normalise it
EDGE_MASS = 1e-3


def query_error(field: str, message: str, allowed: str) -> ApiError:
    return ApiError(
        422, [{"loc": ["query", field], "msg": message, "type": "value_error", "allowed": allowed}]
    )


def _label(dataset: str, label: str | None) -> int | None:
    if label is None:
        return None
    names = class_names(dataset) if dataset in CLASS_SPECS else ()
    if not names:
        raise query_error("class", f"dataset {dataset!r} has no classes", "omitted")
    if label in names:
        return names.index(label)
    if label.isdigit() and int(label) < len(names):
        return int(label)
    raise query_error("class", "unknown class", f"0..{len(names) - 1} or {list(names)}")


def density_grid(
    dataset: str,
    resolution: int,
    noise: float | None,
    label: int | None,
    w: float | None,
    bound: float = BOUND,
) -> dict:
    cell = 2 * bound / resolution
    noise = cell if noise is None else noise
    g = -bound + cell * (np.arange(resolution) + 0.5)
    ys, xs = np.meshgrid(g, g, indexing="ij")  # row i is y = g[i], column j is x = g[j]
    x = torch.tensor(np.stack([xs.ravel(), ys.ravel()], 1))
    density = exact_density(dataset)
    a, s = math.sqrt(1 - noise * noise), noise
    if label is None:
        log_p = density.log_p(x, a, s)
    else:  # cfg's intended target, p(x | c)^w p(x)^(1 - w) / Z (w = 1: the class itself)
        cond = density.log_p(x, a, s, labels=label)
        log_p = (1.0 if w is None else w) * cond + (1 - (1.0 if w is None else w)) * density.log_p(
            x, a, s
        )
    grid = log_p.numpy().reshape(resolution, resolution)
    finite = np.isfinite(grid)
    log_z = float(np.logaddexp.reduce(grid[finite]) + 2 * math.log(cell))
    grid = grid - log_z
    border = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]])
    border = border[np.isfinite(border)]
    if len(border) and border.max() > math.log(EDGE_MASS / (8 * bound)):
        raise query_error(
            "bound",
            f"the target's density at the grid's edge is {math.exp(border.max()):.2g}: it has mass "
            f"beyond [-{bound:g}, {bound:g}]^2, which this grid cannot normalise",
            "a larger bound, or a smaller w or noise",
        )
    return {
        "dataset": dataset,
        "bound": bound,
        "resolution": resolution,
        "noise": noise,
        "class": label,
        "w": w,
        "log_z": log_z,
        "log_p": [
            [None if not math.isfinite(v) else round(float(v), 4) for v in row] for row in grid
        ],
    }


@router.get(
    "/datasets/{dataset}/density",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def dataset_density(
    dataset: DatasetName,
    resolution: Annotated[int, Query(ge=16, le=200, description="Cells per axis.")] = 96,
    noise: Annotated[
        float | None,
        Query(ge=0.0, lt=1.0, description="s of x_t = sqrt(1 - s^2) x_0 + s eps; default one cell"),
    ] = None,
    label: Annotated[str | None, Query(alias="class", description="A class: its target.")] = None,
    w: Annotated[
        float | None,
        Query(ge=W_RANGE[0], le=W_RANGE[1], description="cfg's weight (with class)."),
    ] = None,
    bound: Annotated[
        float, Query(ge=BOUND_RANGE[0], le=BOUND_RANGE[1], description="The grid's half-width.")
    ] = BOUND,
) -> Response:
    """log p of the dataset's exact density (smoothed by `noise`) on a grid over
    [-bound, bound]^2, rows by y; with `class` (and `w`), cfg's intended target
    p(x | c)^w p(x)^(1 - w), normalised on the grid. Cells of density 0 are null."""
    index = _label(dataset, label)
    if w is not None and index is None:
        raise query_error("w", "w is cfg's weight and needs a class", "a class, or no w")
    body = await run_in_threadpool(density_grid, dataset, resolution, noise, index, w, bound)
    return Response(orjson.dumps(body), media_type="application/json")
