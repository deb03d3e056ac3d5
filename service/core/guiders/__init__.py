"""Guidance methods as plug-ins: one file a guider (core/guiders/base.py is the interface).

The import below is the one place a new guider is named: its module, one entry.
"""

from service.core.guiders import (  # noqa: F401  the registry: each module registers its own
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

# /variants lists the paper's first, then by family; a family not named here comes last
_FAMILIES = ("paper", "density", "prior", "cfg", "autoguidance")
_ordered = sorted(
    GUIDERS.values(),
    key=lambda g: _FAMILIES.index(g.family) if g.family in _FAMILIES else len(_FAMILIES),
)
GUIDERS.clear()
GUIDERS.update((g.name, g) for g in _ordered)

__all__ = ["GUIDERS", "all_params", "get_guider", "register", "scale_bounds"]
