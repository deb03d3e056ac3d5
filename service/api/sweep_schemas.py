"""The /sweeps request and answers. A grid names /evaluate's fields, each a value or a list;
the cells are every combination of the lists, times the seeds."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.api.schemas import ClassMetrics, EvaluateRequest, EvaluateResponse, ExactMetrics

# A sweep's cells run at batch priority with the server's longest deadline, and their seeds come
# from `seeds`; these request fields are not the grid's to set.
NOT_IN_GRID = ("seed", "priority", "deadline_s")
SEEDS_MAX = 1000
DEFAULT_METRICS = ["kl_bits", "precision", "recall", "nonfinite_fraction", "seconds_per_sample"]


def _numeric(annotation: Any) -> bool:
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    kinds = set(args or (annotation,)) - {type(None)}
    return bool(kinds) and kinds <= {int, float}


def _metric_names() -> list[str]:
    names = []
    for prefix, model in (
        ("", EvaluateResponse),
        ("exact.", ExactMetrics),
        ("class_metrics.", ClassMetrics),
    ):
        for name, info in model.model_fields.items():
            if _numeric(info.annotation) and name not in ("seed", "n", "k", "label"):
                names.append(prefix + name)
    return names


METRICS = _metric_names()
GRID_FIELDS = sorted(
    (f.alias or name) for name, f in EvaluateRequest.model_fields.items() if name not in NOT_IN_GRID
)


class SweepRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "grid": {
                        "dataset": ["moons", "dino"],
                        "variant": ["baseline", "smoothed"],
                        "scale": [0.5, 1.0],
                        "n": 2000,
                        "steps": 20,
                    },
                    "seeds": 3,
                    "metrics": ["kl_bits", "precision", "recall"],
                    "name": "smoothed against baseline",
                }
            ]
        },
    )
    grid: dict[str, Any] = Field(
        description="/evaluate's fields (GET /sweeps/fields lists them), each a value or a "
        "non-empty list of values; seed, priority and deadline_s are the sweep's.",
        min_length=1,
    )
    seeds: int | list[int] = Field(
        1,
        description=f"A count (seeds 0..count-1) or a list of seeds, at most {SEEDS_MAX}.",
    )
    metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_METRICS),
        min_length=1,
        max_length=len(METRICS),
        description="What the table reports, each with a mean and 95% interval over seeds "
        "(GET /sweeps/fields lists them).",
    )
    name: str | None = Field(None, max_length=200)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int) and not 1 <= v <= SEEDS_MAX:
            raise ValueError(f"a count of seeds is 1..{SEEDS_MAX}")
        if isinstance(v, list) and not 1 <= len(v) <= SEEDS_MAX:
            raise ValueError(f"a list of 1..{SEEDS_MAX} seeds")
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError("seeds repeat")
        return v

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


class SweepCreated(BaseModel):
    id: str
    cells: int
    configs: int
    predicted_s: float = Field(description="Predicted seconds of work, on this replica alone.")
    state: str
    links: dict[str, str]


class SweepStatus(BaseModel):
    id: str
    name: str | None
    state: str = Field(description="running, done or cancelled.")
    created_at: float
    finished_at: float | None
    cells: int
    done: int
    failed: int
    running: int
    pending: int
    predicted_s: float
    elapsed_s: float
    spec: dict[str, Any] = Field(description="The grid, seeds and metrics as submitted.")
    rows: list[dict[str, Any]] | None = Field(
        None, description="The finished cells (GET /sweeps/{id}?rows=false leaves them out)."
    )
