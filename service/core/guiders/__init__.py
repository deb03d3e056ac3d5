"""Guidance methods as plug-ins: one file a guider (core/guiders/base.py is the interface).

The registry below is the one place a new guider is named: its module, one line.
"""

# the registry, in the order /variants lists them
from service.core.guiders import (  # noqa: E402, E501, F401, I001
    apg,
    autoguidance,
    cfg,
    cfg_plus_plus,
    cfg_zero_star,
    density,
    paper,
    prior,
)
from service.core.guiders.registry import GUIDERS, all_params, get_guider, register, scale_bounds

__all__ = ["GUIDERS", "all_params", "get_guider", "register", "scale_bounds"]
