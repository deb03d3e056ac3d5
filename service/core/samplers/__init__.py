"""Samplers as plug-ins: one file a sampler (core/samplers/base.py is the interface).

The import below is the one place a new sampler is named: its module, one entry. Its order is
the order /samplers lists them in (the default, ddpm, first).
"""

# isort: off
from service.core.samplers import (  # noqa: F401  the registry: each module registers its own
    ddpm,
    ddim,
    euler_a,
    heun,
    dpmpp_2m,
    dpmpp_2m_sde,
    dpmpp_3m_sde,
    unipc,
)

# isort: on
from service.core.samplers.base import COEF_WIDTH, ETA_RANGE, Sampler, Stages
from service.core.samplers.registry import SAMPLERS, get_sampler, register, sampler_params

__all__ = [
    "COEF_WIDTH",
    "ETA_RANGE",
    "SAMPLERS",
    "Sampler",
    "Stages",
    "get_sampler",
    "register",
    "sampler_params",
]
