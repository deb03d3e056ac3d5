"""Named numeric parameters of samplers and guiders: a default, a range, a description.

One record type for both plug-in kinds, so /samplers, /variants, the OpenAPI schema and the
422s read every range from the component that owns it. A bad value raises RequestError naming
`<field>.<name>` (e.g. `guider_params.momentum`) and the allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from service.core.errors import RequestError


@dataclass(frozen=True)
class Param:
    default: float
    low: float
    high: float
    description: str
    integer: bool = False
    low_open: bool = False  # low itself is not allowed (a norm threshold must be > 0)

    def allowed(self, name: str) -> str:
        op = "<" if self.low_open else "<="
        kind = "an integer" if self.integer else "finite"
        return f"{self.low:g} {op} {name} <= {self.high:g}, {kind}"

    def interval(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def admits(self, value: float) -> bool:
        if not math.isfinite(value) or value > self.high:
            return False
        if self.integer and value != int(value):
            return False
        return value > self.low if self.low_open else value >= self.low


def resolve_params(
    field: str,
    owner: str,
    params: Mapping[str, Param],
    given: Mapping[str, float | None],
    takers: Mapping[str, list[str]] | None = None,
) -> dict[str, float]:
    """`params` with defaults filled in from `given`; RequestError naming `field.name` for a
    parameter `owner` does not take (and, from `takers`, the owners that do) or a value outside
    its range."""
    kind = field.split("_")[0]
    for name, value in given.items():
        if value is not None and name not in params:
            others = (takers or {}).get(name)
            allowed = f"only with {kind} {' or '.join(others)}" if others else "omitted"
            raise RequestError(
                f"{field}.{name}",
                f"{name} applies only to {kind}s that take it, not {owner!r} (it takes "
                f"{sorted(params) or 'none'})",
                allowed,
            )
    out = {}
    for name, p in params.items():
        value = given.get(name)
        value = p.default if value is None else value
        if isinstance(value, bool) or not isinstance(value, int | float) or not p.admits(value):
            raise RequestError(
                f"{field}.{name}",
                f"{name} must be in {p.interval()}, got {value!r:.40}",
                p.allowed(name),
            )
        out[name] = int(value) if p.integer else float(value)
    return out
