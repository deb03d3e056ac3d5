"""GET /variants, /samplers and /models: what can be asked for, and what is loaded."""

from __future__ import annotations

from typing import Annotated

import orjson
import torch
from fastapi import APIRouter, Query
from fastapi.responses import Response

from service.api.schemas import (
    DatasetName,
    ModelsResponse,
    SamplerInfo,
    SamplerParamInfo,
    SamplersResponse,
    VariantInfo,
    VariantsResponse,
)
from service.api.state import StateDep
from service.core.classes import CLASSES, class_names
from service.core.data import reference_points
from service.core.guidance import GRADIENTS, VARIANTS
from service.core.samplers import SAMPLERS
from service.serving.registry import describe

router = APIRouter(tags=["catalog"])
PAPER_T = 100
MAX_POINTS = 10_000


@router.get("/variants", response_model=VariantsResponse)
async def variants(state: StateDep) -> VariantsResponse:
    """Every guidance variant with its default scale and gamma schedule; the loaded datasets."""
    t = torch.arange(PAPER_T - 1, -1, -1)
    infos = [
        VariantInfo(
            name=v.name,
            description=v.description,
            default_scale=v.default_scale,
            gamma=v.gamma_formula,
            needs_density_model=v.needs_gradient,
            smoothing=v.smoothing,
            gamma_schedule=[round(g, 8) for g in v.gamma(t, PAPER_T, v.default_scale).tolist()],
            kind=v.kind,
            scale_range=list(v.scale_range),
            gradients=sorted(GRADIENTS) if v.needs_gradient else [],
            samplers=list(v.samplers or SAMPLERS),
        )
        for v in VARIANTS.values()
    ]
    reg = state.registry
    defaults = {d: reg.defaults(d) for d in reg.datasets()}
    recipes = {
        d: {obj: reg.recipe(name) for obj, name in objs.items()} for d, objs in defaults.items()
    }
    return VariantsResponse(
        variants=infos,
        samplers=sorted(SAMPLERS),
        datasets=reg.datasets(),
        defaults=defaults,
        recipes=recipes,
        classes={d: list(class_names(d)) for d in reg.conditional_datasets() if d in CLASSES},
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
