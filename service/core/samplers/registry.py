"""The samplers' registry: every module of core/samplers registers its own at import."""

from __future__ import annotations

from collections.abc import Mapping

from service.core.params import resolve_params
from service.core.samplers.base import Sampler

SAMPLERS: dict[str, Sampler] = {}


def register(sampler: Sampler) -> Sampler:
    SAMPLERS[sampler.name] = sampler
    return sampler


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid names: {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def sampler_params(sampler: Sampler, given: Mapping[str, float | None]) -> dict[str, float]:
    """The sampler's parameters with defaults filled in; RequestError naming a bad one."""
    takers: dict[str, list[str]] = {}
    for other in SAMPLERS.values():
        for name in other.params:
            takers.setdefault(name, []).append(other.name)
    return resolve_params("sampler_params", sampler.name, sampler.params, given, takers)
