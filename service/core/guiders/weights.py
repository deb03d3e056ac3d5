"""Guidance-weight schedules: a weighted guider's w at each noise level.

A schedule maps the request's scale w to w(sigma) = 1 + (w - 1) f(sigma), where f in [0, 1]
and 1 is the conditional model unguided (so also costs no reference pass). sigma is the
variance-exploding noise level sqrt(1/alpha_bar - 1) (EDM's), over [sigma_lo, sigma_hi]: the
request's `guidance_interval`, or the plan's whole range. Outside the interval w = 1.

- constant: f = 1 (every step at w).
- interval: f = 1 inside [sigma_lo, sigma_hi], 0 outside (Kynkaanniemi et al. 2024, "Applying
  guidance in a limited interval improves sample and distribution quality"); the constant
  schedule with an interval is the same thing.
- linear: f = (sigma_hi - sigma) / (sigma_hi - sigma_lo): no guidance at the highest noise,
  full weight at the lowest, the increasing schedules of Wang et al. 2024 ("Analysis of
  classifier-free guidance weight schedulers") that Jin et al. 2025 also study.
- cosine: f = (1 + cos(pi u)) / 2 with u = (sigma - sigma_lo) / (sigma_hi - sigma_lo): the same
  ends, flat at both.
"""

from __future__ import annotations

import math

import torch

from service.core.errors import RequestError
from service.core.guiders.base import Guider
from service.core.model import ReadyModel

SIGMA_LIMIT = 1e4  # |sigma| bound of a guidance interval; the schedules reach ~15
SCHEDULES = {
    "constant": "w at every noise level (inside guidance_interval, if given)",
    "interval": "w inside guidance_interval, 1 outside (needs guidance_interval)",
    "linear": "1 + (w - 1) (sigma_hi - sigma) / (sigma_hi - sigma_lo): full w at low noise",
    "cosine": "1 + (w - 1) (1 + cos(pi u)) / 2, u = (sigma - sigma_lo) / (sigma_hi - sigma_lo)",
}


def resolve_schedule(
    g: Guider, schedule: str | None, interval: tuple[float, float] | None
) -> tuple[str | None, tuple[float, float] | None]:
    """(schedule, interval) a weighted guider runs with: `constant` by default, `interval`
    when only an interval is given; RequestErrors naming the field otherwise."""
    if not g.weighted:
        return None, None
    if schedule is not None and schedule not in SCHEDULES:
        raise RequestError(
            "guidance_schedule", "unknown guidance schedule", f"one of {sorted(SCHEDULES)}"
        )
    if interval is not None:
        lo, hi = float(interval[0]), float(interval[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi <= SIGMA_LIMIT):
            raise RequestError(
                "guidance_interval",
                "guidance_interval must be [sigma_lo, sigma_hi] with 0 <= sigma_lo < sigma_hi",
                f"0 <= sigma_lo < sigma_hi <= {SIGMA_LIMIT:g}",
            )
        interval = (lo, hi)
    if schedule == "interval" and interval is None:
        raise RequestError(
            "guidance_interval",
            "guidance schedule 'interval' needs guidance_interval",
            "[sigma_lo, sigma_hi]",
        )
    if schedule is None:
        schedule = "constant" if interval is None else "interval"
    return schedule, interval


def sigmas(model: ReadyModel, t: torch.Tensor) -> torch.Tensor:
    """The VE noise level of network timesteps t, float64 on the CPU."""
    ab = model.schedule.alpha_bar.double().cpu()[t.cpu()]
    return (1 / ab - 1).sqrt()


def weight_column(
    model: ReadyModel,
    t: torch.Tensor,
    scale: float,
    schedule: str | None,
    interval: tuple[float, float] | None,
) -> torch.Tensor:
    """w per evaluation (its network timesteps `t`), float64."""
    sigma = sigmas(model, t)
    w = torch.full((len(t),), float(scale), dtype=torch.float64)
    lo, hi = interval if interval is not None else (float(sigma.min()), float(sigma.max()))
    inside = (sigma >= lo) & (sigma <= hi)
    if schedule in ("linear", "cosine"):
        u = ((sigma - lo) / max(hi - lo, 1e-12)).clamp(0, 1)
        f = 1 - u if schedule == "linear" else 0.5 * (1 + torch.cos(math.pi * u))
        w = 1 + (w - 1) * f
    # constant and interval: w itself, not 1 + (w - 1) * 1, so the weight is bit-exact
    return torch.where(inside, w, torch.ones_like(w))
