"""Request and response models: every field's range is in the schema and in OpenAPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.settings import K_RANGE, N_CEILING, SCALE_RANGE, STEPS_CEILING
from service.core.data import DATASETS
from service.core.guidance import VARIANTS

DatasetName = Literal[tuple(sorted(DATASETS))]  # type: ignore[valid-type]
VariantName = Literal[tuple(sorted(VARIANTS))]  # type: ignore[valid-type]
SEED_MAX = 2**63 - 1
MODEL_FIELD = Field(
    None,
    max_length=80,
    description="A model name or sha256 from /models, or an objective: 'plain' or 'density'. "
    "Default: the plain model for baseline, the density model for guided variants.",
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName
    variant: VariantName = "baseline"
    scale: float | None = Field(
        None,
        ge=SCALE_RANGE[0],
        le=SCALE_RANGE[1],
        allow_inf_nan=False,
        description="Guidance scale s; default: the variant's (see /variants).",
    )
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="Default: a random seed.")
    steps: int | None = Field(
        None,
        ge=1,
        le=STEPS_CEILING,
        description="Reverse steps (respaced DDPM); at most the model's T. Default: T.",
    )
    model: str | None = MODEL_FIELD
    deadline_s: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Give up after this many seconds (504); default and maximum: server settings.",
    )


class SampleRequest(_Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"dataset": "moons", "variant": "baseline", "n": 1000, "seed": 0},
                {"dataset": "dino", "variant": "smoothed", "scale": 0.01, "n": 256},
            ]
        },
    )
    n: int = Field(1000, ge=1, le=N_CEILING, description="Number of samples.")


class EvaluateRequest(_Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"dataset": "moons", "variant": "adaptive", "n": 10000}]},
    )
    n: int = Field(10_000, ge=6, le=N_CEILING, description="Samples to score.")
    k: int = Field(5, ge=K_RANGE[0], le=K_RANGE[1], description="Neighbours of the KL estimator.")


class Timing(BaseModel):
    queue_s: float = Field(description="Submission to first denoising step.")
    compute_s: float = Field(description="First denoising step to last.")
    total_s: float = Field(description="Arrival at the server to the response.")


class SampleResponse(BaseModel):
    samples: list[list[float | None]] = Field(description="[[x, y], ...]; non-finite -> null.")
    n: int
    dataset: str
    variant: str
    scale: float
    seed: int
    steps: int
    model: str = Field(description="The model's id: the sha256 of its weights.")
    model_name: str
    nonfinite: int
    timing: Timing

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "samples": [[0.12, -0.48], [1.93, 0.21]],
                    "n": 2,
                    "dataset": "moons",
                    "variant": "baseline",
                    "scale": 0.0,
                    "seed": 0,
                    "steps": 100,
                    "model": "48e4d...",
                    "model_name": "moons-plain",
                    "nonfinite": 0,
                    "timing": {"queue_s": 0.001, "compute_s": 0.21, "total_s": 0.22},
                }
            ]
        }
    )


class EvaluateResponse(BaseModel):
    kl_bits: float | None = Field(description="KL(data || samples), bits; null if too few finite")
    nonfinite_fraction: float
    nonfinite: int
    sampling_seconds: float = Field(description="First denoising step to last, whole batch.")
    seconds_per_sample: float
    n: int
    k: int
    dataset: str
    variant: str
    scale: float
    seed: int
    steps: int
    model: str
    model_name: str
    timing: Timing


class VariantInfo(BaseModel):
    name: str
    description: str
    default_scale: float
    gamma: str = Field(description="gamma_t as a formula of s, t and T.")
    needs_density_model: bool
    smoothing: float | None
    gamma_schedule: list[float] = Field(description="gamma_t at the default scale, t = T-1 .. 0.")


class VariantsResponse(BaseModel):
    variants: list[VariantInfo]
    datasets: list[str] = Field(description="Datasets with at least one loaded model.")
    defaults: dict[str, dict[str, str]] = Field(description="dataset -> objective -> model.")
    recipes: dict[str, dict[str, str]] = Field(description="dataset -> objective -> recipe.")


class ModelsResponse(BaseModel):
    models: list[dict[str, Any]]
    unavailable: dict[str, str] = Field(description="model name -> why it is not served.")


class ErrorResponse(BaseModel):
    detail: Any
