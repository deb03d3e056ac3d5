"""The guiders' registry: every module of core/guiders registers its own at import."""

from __future__ import annotations

from service.core.guiders.base import Guider

GUIDERS: dict[str, Guider] = {}


def register(guider: Guider) -> Guider:
    if guider.name in GUIDERS:
        raise ValueError(f"guider {guider.name!r} registered twice")
    GUIDERS[guider.name] = guider
    return guider


def get_guider(name: str) -> Guider:
    if name not in GUIDERS:
        raise ValueError(f"unknown variant {name!r}; valid names: {sorted(GUIDERS)}")
    return GUIDERS[name]


def scale_bounds() -> tuple[float, float]:
    """The widest scale any guider takes (each guider's own range is checked when planning)."""
    return (
        min(g.scale_range[0] for g in GUIDERS.values()),
        max(g.scale_range[1] for g in GUIDERS.values()),
    )


def all_params() -> dict:
    """Every guider parameter by name (a name means one thing across guiders), and the guiders
    that take it."""
    out: dict = {}
    for g in GUIDERS.values():
        for name, p in g.params.items():
            if name in out and out[name][0] != p:
                raise ValueError(f"guider parameter {name!r} is declared twice, differently")
            out.setdefault(name, (p, []))[1].append(g.name)
    return out
