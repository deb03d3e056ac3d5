"""Request and response models: every field's range is in the schema and in OpenAPI.

Requests are strict: JSON `true` is not 1 and `"10"` is not 10 (a float field still takes a
JSON integer). openapi_limits.py narrows these hard ceilings to the running server's settings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from service.api.settings import (
    DEADLINE_CEILING,
    K_RANGE,
    N_CEILING,
    PREVIEW_ROWS_CEILING,
    STEPS_CEILING,
)
from service.core.data import DATASETS
from service.core.guiders import GUIDERS, all_params, scale_bounds
from service.core.guiders.paper import GRADIENTS
from service.core.guiders.weights import SCHEDULES, SIGMA_LIMIT
from service.core.likelihood import HELDOUT_SEED
from service.core.params import Param
from service.core.samplers import ETA_RANGE, SAMPLERS
from service.core.spacing import SPACINGS
from service.core.store import NAME_PATTERN
from service.serving.priority import PRIORITY_CLASSES

DatasetName = Literal[tuple(sorted(DATASETS))]  # type: ignore[valid-type]
VariantName = Literal[tuple(sorted(GUIDERS))]  # type: ignore[valid-type]
ScheduleName = Literal[tuple(sorted(SCHEDULES))]  # type: ignore[valid-type]
SCALE_RANGE = scale_bounds()
SamplerName = Literal[tuple(sorted(SAMPLERS))]  # type: ignore[valid-type]
SpacingName = Literal[tuple(sorted(SPACINGS))]  # type: ignore[valid-type]
GradientName = Literal[tuple(sorted(GRADIENTS))]  # type: ignore[valid-type]
PriorityName = Literal[PRIORITY_CLASSES]  # type: ignore[valid-type]
TARGET_LOG_P_LIMIT = 1000.0  # nats; a 2D density's log is far inside this
SEED_MAX = 2**63 - 1
MODEL_FIELD = Field(
    None,
    min_length=1,
    max_length=64,
    # a store name (store.NAME_PATTERN) also covers a lowercase sha256 and 'plain'/'density'
    pattern=NAME_PATTERN.pattern,
    examples=["moons-plain-improved", "density"],
    description="A model name or sha256 from /models, or an objective: 'plain', 'density' or "
    "'energy'. Default: the plain model, or for the paper's guided variants the model of the "
    "gradient (the density model for 'head').",
)


LOG_P_SAMPLES_DEFAULT, LOG_P_SAMPLES_MAX = 200, 2_000
CLASS_INDEX_MAX = 1023  # the service's datasets have 2 classes; the model says how many
ClassIndex = Annotated[int, Field(ge=0, le=CLASS_INDEX_MAX)]
ClassName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
Sigma = Annotated[float, Field(ge=0, le=SIGMA_LIMIT, allow_inf_nan=False)]


def _param_field(p: Param, takers: list[str]) -> tuple[Any, Any]:
    bound = {"gt" if p.low_open else "ge": int(p.low) if p.integer else p.low}
    kind: Any = int if p.integer else float
    extra = {} if p.integer else {"allow_inf_nan": False}
    field = Field(
        None, le=p.high, **bound, **extra, description=f"{', '.join(takers)}: {p.description}."
    )
    return kind | None, field


def _params_model(name: str, params: dict[str, tuple[Param, list[str]]], doc: str) -> Any:
    """A request object with one optional field per plug-in parameter, its range in OpenAPI."""
    fields = {k: _param_field(p, takers) for k, (p, takers) in sorted(params.items())}
    model = create_model(
        name, __config__=ConfigDict(extra="forbid", strict=True), __doc__=doc, **fields
    )
    return model


GuiderParams = _params_model(
    "GuiderParams",
    all_params(),
    "The guider's parameters (/variants lists each guider's, with defaults and ranges); a "
    "parameter the chosen variant does not take is refused.",
)
SamplerParams = _params_model(
    "SamplerParams",
    {k: (p, [s.name]) for s in SAMPLERS.values() for k, p in s.params.items()},
    "The sampler's parameters (/samplers lists each sampler's); `eta` may also be given at the "
    "top level.",
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    dataset: DatasetName
    variant: VariantName = "baseline"
    scale: float | None = Field(
        None,
        ge=SCALE_RANGE[0],
        le=SCALE_RANGE[1],
        allow_inf_nan=False,
        description="Guidance scale s (cfg's w); default: the variant's. Each variant's range "
        "is in /variants.",
    )
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="Default: a random seed.")
    steps: int | None = Field(
        None,
        ge=1,
        le=STEPS_CEILING,
        description="Reverse steps on the respaced schedule; at most the model's T. "
        "Default: T. Network evaluations: see /samplers.",
    )
    sampler: SamplerName | None = Field(
        None,
        description="The reverse-process solver (/samplers). Default: the variant's first "
        "sampler in /variants (ddpm, or heun for 'density' and 'prior').",
    )
    spacing: SpacingName | None = Field(
        None,
        description="Which of the model's timesteps a run of fewer than T steps keeps "
        "(/samplers lists the spacings). Default: 'uniform', the service's original; a request "
        "that names steps but neither sampler nor spacing gets the few-step default of "
        "/samplers.",
    )
    eta: float | None = Field(
        None,
        ge=ETA_RANGE[0],
        le=ETA_RANGE[1],
        allow_inf_nan=False,
        description="ddim only: 0 deterministic (default), 1 DDPM-like noise "
        "(the same as sampler_params.eta).",
    )
    sampler_params: SamplerParams | None = Field(  # type: ignore[valid-type]
        None, description='The sampler\'s parameters (/samplers), e.g. {"eta": 0.5}.'
    )
    guider_params: GuiderParams | None = Field(  # type: ignore[valid-type]
        None,
        description="The variant's parameters (/variants), e.g. apg's {\"momentum\": -0.5}.",
        examples=[{"momentum": -0.5, "norm_threshold": 1.0}],
    )
    guidance_schedule: ScheduleName | None = Field(
        None,
        description="Weighted variants (cfg, apg, cfg_zero_star, autoguidance): w over the "
        "noise level, 1 + (w - 1) f(sigma) (/variants lists the schedules). Default: constant, "
        "or 'interval' with guidance_interval.",
    )
    gradient: GradientName | None = Field(
        None,
        description="The paper's guided variants: the density gradient g in eps + gamma g "
        "(/variants lists them). Default: 'head' on a density model, 'energy' on an energy model; "
        "a plain model needs 'score'. Without a model, picks the dataset's model that offers it.",
    )
    target_log_p: float | None = Field(
        None,
        ge=-TARGET_LOG_P_LIMIT,
        le=TARGET_LOG_P_LIMIT,
        allow_inf_nan=False,
        description="Variant density only: the log-density (nats) to steer every sample to, "
        "instead of the scale's quantile.",
    )
    model: str | None = MODEL_FIELD
    deadline_s: float | None = Field(
        None,
        gt=0,
        le=DEADLINE_CEILING,
        allow_inf_nan=False,
        description="Give up after this many seconds (504); default and maximum: server settings.",
    )
    priority: PriorityName | None = Field(
        None,
        description="The request's class in the step-level batcher: 'interactive' rows run "
        "first, 'batch' rows keep a guaranteed share of each second. Default: interactive up "
        "to n = INTERACTIVE_MAX_N (1024), batch above; interactive is refused above it.",
    )
    label: ClassIndex | ClassName | None = Field(
        None,
        alias="class",
        description="Class-conditional models: the class to sample, by index or name "
        "(/models lists them: boxes and gaussians 'left'/'right', moons 'upper'/'lower'). "
        "Needed by cfg; default: the null class (unconditional). Names a conditional model's "
        "dataset: without `model`, the request runs on it.",
        examples=["left", 0],
    )
    guidance_interval: list[Sigma] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Weighted variants: [sigma_lo, sigma_hi]; w applies only at noise "
        "levels sigma = sqrt(1/alpha_bar - 1) inside it (Kynkaanniemi et al. 2024), the "
        "conditional model alone elsewhere; the span of a linear or cosine schedule. "
        "Default: every step.",
        examples=[[0.3, 3.0]],
    )
    guide_model: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=NAME_PATTERN.pattern,
        description="autoguidance: the guiding model (a smaller, shorter-trained conditional "
        "model of the same schedule). Default: the dataset's model of recipe 'guide'.",
        examples=["moons-conditional-guide"],
    )


class SampleRequest(_Request):
    """Draw n samples. Types are strict: an integer is a JSON integer (10, not 10.0 or "10")."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"dataset": "moons", "variant": "baseline", "n": 1000, "seed": 0},
                {"dataset": "dino", "variant": "smoothed", "scale": 0.01, "n": 256},
                {"dataset": "moons", "sampler": "dpmpp_2m", "steps": 20, "n": 1000, "seed": 0},
                {"dataset": "boxes", "variant": "cfg", "class": "left", "scale": 3.0, "n": 500},
            ]
        },
    )
    n: int = Field(1000, ge=1, le=N_CEILING, description="Number of samples.")


class StreamRequest(SampleRequest):
    """/sample's body, and how the stream reports: progress and previews every m evaluations."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"dataset": "moons", "n": 1000, "seed": 0, "every": 5, "preview_rows": 128}
            ]
        },
    )
    every: int | None = Field(
        None,
        ge=1,
        le=STEPS_CEILING,
        description="A progress and a preview event every this many network evaluations. "
        "Default: about 25 events per request.",
    )
    preview_rows: int = Field(
        64,
        ge=0,
        le=PREVIEW_ROWS_CEILING,
        description="Rows of x_t and predicted x_0 in each preview (the first rows of the "
        "request); 0: no previews. At most MAX_PREVIEW_ROWS on this server.",
    )


class EvaluateRequest(_Request):
    """Score n fresh samples. Types are strict: an integer is a JSON integer (10, not 10.0)."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"dataset": "moons", "variant": "adaptive", "n": 10000},
                {"dataset": "gaussians", "variant": "cfg", "class": "right", "scale": 4.0},
            ]
        },
    )
    n: int = Field(10_000, ge=6, le=N_CEILING, description="Samples to score.")
    k: int = Field(5, ge=K_RANGE[0], le=K_RANGE[1], description="Neighbours of the KL estimator.")
    log_p_samples: int = Field(
        LOG_P_SAMPLES_DEFAULT,
        ge=0,
        le=LOG_P_SAMPLES_MAX,
        description="How many of the samples get their exact log-density under the model "
        "(probability-flow ODE, about a second per 100 on a CPU) for `mean_log_p`; 0: none. "
        "Variant density reports its tracked log-density of every sample instead.",
    )


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
    sampler: str
    spacing: str = Field("uniform", description="The timesteps' spacing (/samplers).")
    sampler_params: dict[str, float] = Field(
        default_factory=dict, description="The sampler's parameters used."
    )
    evaluations: int = Field(description="Network evaluations per sample (NFE).")
    model: str = Field(description="The model's id: the sha256 of its weights.")
    model_name: str
    nonfinite: int
    gradient: str | None = Field(None, description="The density gradient of a paper variant.")
    log_p: list[float | None] | None = Field(
        None,
        description="Variant density: each sample's log-density (nats) under the model, "
        "tracked along its path (docs/RESULTS.md measures it against the exact ODE likelihood).",
    )
    target_log_p: float | None = Field(
        None, description="Variant density: the log-density every sample was steered to."
    )
    priority: str = Field("interactive", description="The class the request ran in.")
    label: int | None = Field(
        None, alias="class", description="The class sampled (index); null: unconditional."
    )
    class_name: str | None = None
    guide_model: str | None = Field(None, description="autoguidance: the guide's name.")
    guidance_interval: list[float] | None = None
    guidance_schedule: str | None = Field(None, description="Weighted variants: the schedule.")
    guider_params: dict[str, float] = Field(
        default_factory=dict, description="The variant's parameters used, defaults filled in."
    )
    guided_evaluations: int = Field(
        0,
        description="Evaluations that also ran the variant's reference pass (the null class "
        "or the guide), the rest running the conditional model alone.",
    )
    timing: Timing

    model_config = ConfigDict(
        populate_by_name=True,
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
        },
    )


class ExactMetrics(BaseModel):
    """Against the dataset's exact density (core/exact): no estimate of the data in between."""

    mean_log_p_data: float | None = Field(
        description="The samples' mean exact log p_data (nats), over those where p_data > 0."
    )
    mean_log_p_data_se: float | None = Field(description="Its standard error.")
    data_mean_log_p: float = Field(
        description="The data's own mean log p_data, -H(p_data) (nats), from 100,000 points: "
        "a perfect sampler's score."
    )
    data_mean_log_p_se: float
    support_fraction: float | None = Field(
        description="line and boxes (compact supports): the fraction of samples where p_data > 0."
    )
    energy_distance: float | None = Field(
        description="Energy distance D^2 (unbiased) between up to 2,000 samples and as many exact "
        "draws; 0 for equal distributions."
    )
    energy_distance_floor: float = Field(
        description="Mean |D^2| between independent exact sets of that size: what exact "
        "samples read."
    )
    reverse_kl_bits: float | None = Field(
        None,
        description="KL(samples || p_data), bits: the samples' k-NN entropy estimate against "
        "their exact mean log p_data, over the samples on the support.",
    )
    reverse_kl_floor_bits: float | None = Field(
        None, description="Mean |reverse_kl_bits| of exact sets of the same size."
    )
    median_log_p_data: float | None = Field(
        None, description="The samples' median exact log p_data (robust to far outliers)."
    )
    data_median_log_p: float | None = Field(None, description="The data's own median.")
    off_data_fraction: float | None = Field(
        None,
        description="The fraction of samples below the data's own 0.1% quantile of log p_data "
        "(exact samples: 0.001).",
    )
    forward_kl_bits: float | None = Field(
        None,
        description="The model's KL(p_data || p_model) in bits: held-out NLL minus the data's "
        "entropy, paired per point (null without held-out NLL).",
    )
    forward_kl_se_bits: float | None = None


class ClassMetrics(BaseModel):
    """How a class-conditional sample sits in its class (docs/RESULTS.md, "Guidance geometry").
    Each `data_*` field is the same score of the class's own data: a perfect sampler's."""

    model_config = ConfigDict(populate_by_name=True)

    label: int = Field(alias="class")
    class_name: str
    support_fraction: float | None = Field(
        description="Finite samples inside the class's support; null if none is finite."
    )
    data_support_fraction: float
    support_rule: str = Field(description="What 'inside' means for this dataset.")
    mean_centre_distance: float | None = Field(description="Mean distance from the class's mean.")
    data_mean_centre_distance: float
    mean_shift_away: float | None = Field(
        description="Mean offset from the class's centre along the axis from the other class's "
        "centre to this one's: > 0 is away from the other class (the data's: 0)."
    )
    class_kl_bits: float | None = Field(
        description="KL(class data || samples), bits, the same estimator as kl_bits."
    )
    mean_reciprocal_probability: float | None = Field(
        description="E[1 / p(c | x)] over the finite samples under the model's classifier."
    )
    data_mean_reciprocal_probability: float
    classified_fraction: float | None = Field(
        description="Finite samples the classifier assigns to the class (p(c | x) > 1/2)."
    )
    classifier_heldout_accuracy: float


class EvaluateResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    kl_bits: float | None = Field(description="KL(data || samples), bits; null if too few finite")
    precision: float | None = Field(
        None,
        description="Improved precision (Kynkaanniemi et al. 2019, k-NN balls with the KL's k): "
        "the fraction of samples inside the data's manifold; null if too few finite.",
    )
    recall: float | None = Field(
        None, description="Improved recall: the fraction of data inside the samples' manifold."
    )
    mean_log_p: float | None = Field(
        None,
        description="The mean log-density of the samples under the model (nats): the exact "
        "ODE likelihood of the first `log_p_samples` finite samples, or for variant density the "
        "tracked log-density of all (and `target_log_p` the target); null if none.",
    )
    mean_log_p_method: str | None = Field(None, description="'ode' or 'tracked'.")
    mean_log_p_n: int = Field(0, description="Samples behind mean_log_p.")
    target_log_p: float | None = None
    gradient: str | None = None
    nll_bits: float | None = Field(
        None,
        description="The model's negative log-likelihood of held-out data (probability-flow "
        "ODE), bits per dimension; computed once per model, then cached.",
    )
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
    sampler: str
    spacing: str = Field("uniform", description="The timesteps' spacing (/samplers).")
    sampler_params: dict[str, float] = Field(
        default_factory=dict, description="The sampler's parameters used."
    )
    evaluations: int = Field(description="Network evaluations per sample (NFE).")
    model: str
    model_name: str
    label: int | None = Field(None, alias="class")
    guided_evaluations: int = 0
    guidance_schedule: str | None = None
    guider_params: dict[str, float] = Field(default_factory=dict)
    class_metrics: ClassMetrics | None = Field(
        None, description="Requests with a class on a class-conditional model."
    )
    exact: ExactMetrics | None = Field(None, description="Exact metrics (every dataset).")
    timing: Timing


class GuiderParamInfo(BaseModel):
    default: float
    minimum: float
    maximum: float
    exclusive_minimum: bool = False
    integer: bool = False
    description: str


class VariantInfo(BaseModel):
    name: str
    description: str
    default_scale: float
    gamma: str = Field(description="gamma_t as a formula of s, t and T.")
    needs_density_model: bool = Field(
        description="Takes a density gradient (the `gradient` field): a plain model must ask "
        "for 'score'."
    )
    smoothing: float | None
    gamma_schedule: list[float] = Field(description="gamma_t at the default scale, t = T-1 .. 0.")
    kind: str = Field(
        description="The family: 'paper': eps + gamma g; 'density': Density Guidance; 'prior': "
        "Prior Guidance; 'cfg': guidance of a class-conditional model by its null class; "
        "'autoguidance': by a guide model."
    )
    scale_range: list[float] = Field(
        description="[min, max] of the scale (a quantile q for density and prior)."
    )
    gradients: list[str] = Field(description="The gradient sources it takes (none: []).")
    samplers: list[str] = Field(description="The samplers it runs with.")
    parameters: dict[str, GuiderParamInfo] = Field(
        default_factory=dict, description="Its `guider_params`, with defaults and ranges."
    )
    passes: list[str] = Field(
        default_factory=list,
        description="The network passes an evaluation takes: its main pass, and the reference "
        "('unconditional' or 'guide') where its weight is not 1.",
    )
    schedules: list[str] = Field(
        default_factory=list, description="The guidance schedules it takes (weighted variants)."
    )


class SamplerParamInfo(BaseModel):
    default: float
    minimum: float
    maximum: float
    description: str


class SamplerInfo(BaseModel):
    name: str
    description: str
    evaluations_per_step: str = Field(description="Network evaluations a step takes.")
    evaluations_for_steps: dict[str, int] = Field(
        description="NFE at a few step counts: steps -> network evaluations."
    )
    stochastic: bool = Field(description="Whether it draws fresh noise at each evaluation.")
    parameters: dict[str, SamplerParamInfo]


class SpacingInfo(BaseModel):
    name: str
    description: str


class FewStepDefault(BaseModel):
    sampler: str
    spacing: str = Field(description="On a model with a tuned spacing (/models).")
    fallback_spacing: str = Field(description="On a model without one.")
    sampler_params: dict[str, float]
    why: str = Field(description="What it was chosen on (docs/RESULTS.md).")


class SamplersResponse(BaseModel):
    samplers: list[SamplerInfo]
    default: str
    spacings: list[SpacingInfo] = Field(
        description="Which timesteps a run of S < T steps keeps; every sampler takes each."
    )
    default_spacing: str
    few_step_default: FewStepDefault = Field(
        description="What a request naming `steps` (< T) but neither sampler nor spacing runs "
        "with, for variants that run with every sampler."
    )


class VariantsResponse(BaseModel):
    variants: list[VariantInfo]
    samplers: list[str] = Field(description="Sampler names; details at /samplers.")
    spacings: list[str] = Field(description="Spacing names; details at /samplers.")
    datasets: list[str] = Field(description="Datasets with at least one loaded model.")
    defaults: dict[str, dict[str, str]] = Field(description="dataset -> objective -> model.")
    recipes: dict[str, dict[str, str]] = Field(description="dataset -> objective -> recipe.")
    classes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="dataset -> its class names (index order), where a class-conditional "
        "model is served: the `class` field takes a name or its index.",
    )


class ModelsResponse(BaseModel):
    models: list[dict[str, Any]]
    unavailable: dict[str, str] = Field(description="model name -> why it is not served.")


class ReadyResponse(BaseModel):
    ready: bool
    models: list[str]
    unavailable: dict[str, str] = Field(description="model name -> why it is not served.")
    datasets: list[str]
    error: str | None = Field(None, description="Why loading the store failed, if it did.")


class ReloadResponse(BaseModel):
    # documents /admin/reload's answer without filtering it: fields may be added there
    model_config = ConfigDict(extra="allow")

    models: list[str]
    loaded: list[str]
    retired: list[str]
    unavailable: dict[str, str]


class ErrorResponse(BaseModel):
    detail: Any = Field(
        description="A message, or for 422 a list of {loc, msg, type, allowed, input?}."
    )


ERRORS = {
    400: "The body could not be decoded (it is not UTF-8 text).",
    401: "No valid bearer token (Authorization: Bearer $ADMIN_TOKEN).",
    404: "ADMIN_TOKEN is not set, so the admin endpoints do not exist.",
    413: "The request body is over MAX_BODY_BYTES.",
    415: "The body is not application/json.",
    422: "A field out of range or of the wrong type, or a request the model cannot serve; "
    "each error names the field (loc) and what is allowed.",
    503: "Models still loading, the model or dataset unavailable, or the queue full "
    "(Retry-After says when to retry).",
    504: "The request's deadline passed before its samples were done.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these error statuses, all in the one error shape."""
    return {code: {"model": ErrorResponse, "description": ERRORS[code]} for code in codes}


# Bounds one solve's work: points x LOGLIK_MAX_EVALUATIONS point-evaluations (README "Likelihood")
LOGLIK_MAX_POINTS = 2000
POINT_LIMIT = 100.0  # |coordinate| bound; the datasets lie within 5


Coordinate = Annotated[float, Field(ge=-POINT_LIMIT, le=POINT_LIMIT, allow_inf_nan=False)]
Point = Annotated[list[Coordinate], Field(min_length=2, max_length=2)]


class LoglikRequest(BaseModel):
    """Exact log-density of points under a model's probability-flow ODE (2D: exact divergence).

    Give `points`, or `n` fresh held-out points from the dataset's generator (with `seed`)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"dataset": "moons", "n": 500},
                {"dataset": "moons", "model": "moons-plain", "points": [[0.0, 0.5], [8.0, 8.0]]},
            ]
        },
    )
    dataset: DatasetName
    model: str | None = MODEL_FIELD
    points: list[Point] | None = Field(
        None,
        min_length=1,
        max_length=LOGLIK_MAX_POINTS,
        description=f"[[x, y], ...], each |coordinate| <= {POINT_LIMIT:g}.",
    )
    n: int | None = Field(
        None, ge=1, le=LOGLIK_MAX_POINTS, description="Held-out data points (without points)."
    )
    seed: int = Field(HELDOUT_SEED, ge=0, le=SEED_MAX, description="Seed of the held-out data.")
    deadline_s: float | None = Field(
        None,
        gt=0,
        le=DEADLINE_CEILING,
        allow_inf_nan=False,
        description="Seconds the solve may take (default DEFAULT_DEADLINE_S, at most "
        "MAX_DEADLINE_S); past it: 504, and the solve stops at its next evaluation.",
    )


class LoglikResponse(BaseModel):
    log_density: list[float | None] = Field(
        description="log p(x) per point, nats; null where the integration was not finite."
    )
    finite: list[bool]
    reasons: list[str | None] = Field(
        default_factory=list, description="Why each point is not finite (null where it is)."
    )
    mean_log_density: float | None = Field(description="Over the finite points, nats.")
    bits_per_dim: float | None = Field(description="-mean log p / (2 ln 2).")
    n: int
    dataset: str
    model: str = Field(description="The model's id.")
    model_name: str
    rtol: float
    atol: float
    evaluations: int = Field(
        description="Batched network evaluations of the adaptive ODE solver (each point takes "
        "its own steps; a call evaluates every point still running)."
    )
    point_evaluations: list[int] = Field(
        default_factory=list,
        description="Evaluations each point took: its own work, capped at max_evaluations.",
    )
    max_evaluations: int = Field(
        description="The cap on a point's evaluations (LOGLIK_MAX_EVALUATIONS); a point past "
        "it is not finite, and its reason says so."
    )
    solver: str = Field(
        "pointwise",
        description="pointwise: each point its own steps; scipy (oracle models): one shared "
        "step, and the cap holds for the whole solve.",
    )
    seconds: float
