"""GET /variants, /samplers and /models: what can be asked for, and what is loaded."""

from __future__ import annotations

from typing import Annotated

import orjson
import torch
from fastapi import APIRouter, Query
from fastapi.responses import Response

from service.api.schemas import (
    DatasetName,
    FewStepDefault,
    GuiderParamInfo,
    ModelsResponse,
    SamplerInfo,
    SamplerParamInfo,
    SamplersResponse,
    SpacingInfo,
    VariantInfo,
    VariantsResponse,
)
from service.api.state import StateDep
from service.core.classes import CLASS_SPECS, class_names
from service.core.data import reference_points
from service.core.few_step import FEW_STEP, resolved_params
from service.core.guiders import GUIDERS
from service.core.guiders.base import Guider
from service.core.guiders.paper import GRADIENTS
from service.core.guiders.weights import SCHEDULES
from service.core.samplers import SAMPLERS
from service.core.spacing import DEFAULT_SPACING, SPACINGS
from service.serving.registry import describe

router = APIRouter(tags=["catalog"])
PAPER_T = 100
MAX_POINTS = 10_000


@router.get("/variants", response_model=VariantsResponse)
async def variants(state: StateDep) -> VariantsResponse:
    """Every guidance variant with its default scale and gamma schedule; the loaded datasets."""
    infos = [_info(g) for g in GUIDERS.values()]
    reg = state.registry
    defaults = {d: reg.defaults(d) for d in reg.datasets()}
    recipes = {
        d: {obj: reg.recipe(name) for obj, name in objs.items()} for d, objs in defaults.items()
    }
    return VariantsResponse(
        variants=infos,
        samplers=sorted(SAMPLERS),
        spacings=list(SPACINGS),
        datasets=reg.datasets(),
        defaults=defaults,
        recipes=recipes,
        classes={d: list(class_names(d)) for d in reg.conditional_datasets() if d in CLASS_SPECS},
    )


def _info(g: Guider) -> VariantInfo:
    t = torch.arange(PAPER_T - 1, -1, -1)
    gamma = [0.0] * PAPER_T if g.gamma is None else g.gamma(t, PAPER_T, g.default_scale).tolist()
    passes = [g.main(None if g.gradient is None else "head").name.lower()]
    return VariantInfo(
        name=g.name,
        description=g.description,
        default_scale=g.default_scale,
        gamma=g.scale_text,
        needs_density_model=g.needs_gradient,
        smoothing=g.smoothing,
        gamma_schedule=[round(v, 8) for v in gamma],
        kind=g.family,
        scale_range=list(g.scale_range),
        gradients=sorted(GRADIENTS) if g.needs_gradient else [],
        samplers=list(g.samplers or SAMPLERS),
        parameters={
            name: GuiderParamInfo(
                default=p.default,
                minimum=p.low,
                maximum=p.high,
                exclusive_minimum=p.low_open,
                integer=p.integer,
                description=p.description,
            )
            for name, p in g.params.items()
        },
        passes=passes + ([] if g.reference is None else [g.reference.value]),
        schedules=sorted(SCHEDULES) if g.weighted else [],
    )


@router.get("/samplers", response_model=SamplersResponse)
async def samplers() -> SamplersResponse:
    """Every sampler: what it is, its network evaluations per step, its parameters."""
    return SamplersResponse(
        samplers=[
            SamplerInfo(
                name=smp.name,
                description=smp.description,
                evaluations_per_step=smp.evaluations_text,
                evaluations_for_steps={str(k): smp.evaluations(k) for k in (1, 10, 20, 100)},
                stochastic=smp.stochastic,
                parameters={
                    k: SamplerParamInfo(
                        default=p.default, minimum=p.low, maximum=p.high, description=p.description
                    )
                    for k, p in smp.params.items()
                },
            )
            for smp in SAMPLERS.values()
        ],
        default="ddpm",
        spacings=[
            SpacingInfo(name=sp.name, description=sp.description) for sp in SPACINGS.values()
        ],
        default_spacing=DEFAULT_SPACING,
        few_step_default=FewStepDefault(
            sampler=FEW_STEP.sampler,
            spacing=FEW_STEP.spacing,
            fallback_spacing=FEW_STEP.fallback_spacing,
            sampler_params=resolved_params(FEW_STEP),
            why=FEW_STEP.why,
        ),
    )


@router.get("/models", response_model=ModelsResponse)
async def models(state: StateDep) -> ModelsResponse:
    """Loaded models with their manifests, and the ones that failed to load, with the reason."""
    reg = state.registry
    return ModelsResponse(
        models=[describe(s) for _, s in sorted(reg.models.items())],
        unavailable=dict(sorted(reg.failures.items())),
    )


@router.get(
    "/datasets/{dataset}/points",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def dataset_points(
    dataset: DatasetName,
    n: Annotated[int, Query(ge=1, le=MAX_POINTS, description="Points to return.")] = 2000,
) -> Response:
    """The first n of the points the KL estimator compares samples with (the playground's grey)."""
    points = reference_points(dataset)[:n]
    return Response(
        orjson.dumps({"dataset": dataset, "points": points}, option=orjson.OPT_SERIALIZE_NUMPY),
        media_type="application/json",
    )
