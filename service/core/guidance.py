"""Guidance variants (SPEC.md "Guidance variants"): one registry, one small function each.

A guided step is eps_tilde = eps + gamma_t * g_t (the paper's eq. 3 and 5), where g_t is the
gradient of the density head, grad_x log p_hat(x_t), optionally smoothed per row (eq. 5). t counts
down from T-1 to 0. A new variant is one gamma function plus one `register` line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# The guidance scales the service takes. The CLI checks this; the API its own copy in
# service/api/settings.py (tests/test_cli.py keeps the two equal).
SCALE_RANGE = (-10.0, 10.0)

GammaFn = Callable[[torch.Tensor, int, float], torch.Tensor]  # (t (B,), T, scale) -> (B,)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    default_scale: float
    gamma: GammaFn
    gamma_formula: str
    needs_gradient: bool = True
    # eq. 5: g_t = smoothing * g_{t+1} + (1 - smoothing) * grad; None = raw gradient
    smoothing: float | None = None

    @property
    def has_state(self) -> bool:
        return self.smoothing is not None


VARIANTS: dict[str, Variant] = {}


def register(
    name: str,
    description: str,
    default_scale: float,
    formula: str,
    *,
    needs_gradient: bool = True,
    smoothing: float | None = None,
) -> Callable[[GammaFn], GammaFn]:
    def add(gamma: GammaFn) -> GammaFn:
        VARIANTS[name] = Variant(
            name, description, default_scale, gamma, formula, needs_gradient, smoothing
        )
        return gamma

    return add


@register("baseline", "No guidance: plain ancestral DDPM.", 0.0, "0", needs_gradient=False)
def _baseline(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return torch.zeros_like(t, dtype=torch.float32)


@register("fixed", "Constant guidance strength on the raw density gradient.", 0.1, "s")
def _fixed(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return torch.full_like(t, scale, dtype=torch.float32)


@register("adaptive", "Guidance that grows linearly as t counts down to 0.", 0.2, "s * (1 - t/T)")
def _adaptive(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return scale * (1 - t.float() / T)


@register(
    "smoothed",
    "The paper's eq. 5: decaying strength on an EMA of the density gradient (0.9 old, 0.1 new).",
    0.01,
    "s * (1 - t/T)",
    smoothing=0.9,
)
def _smoothed(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return scale * (1 - t.float() / T)


@register(
    "minimal",
    "Constant, very weak guidance (0.01) on the raw gradient; our reading of the paper's text.",
    0.01,
    "s",
)
def _minimal(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return torch.full_like(t, scale, dtype=torch.float32)


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; valid names: {sorted(VARIANTS)}")
    return VARIANTS[name]


def resolve_scale(variant: Variant, scale: float | None) -> float:
    if scale is None:
        return variant.default_scale
    if not math.isfinite(scale):  # NaN would sample NaN everywhere, inf NaN after one step
        raise ValueError(f"scale must be a finite number, got {scale}")
    return float(scale)


def guided_eps(
    eps: torch.Tensor,
    grad_log_p: torch.Tensor,
    gamma: torch.Tensor,
    alpha: torch.Tensor,
    previous: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """eq. 3 and 5 per row: g = alpha g_prev + (1 - alpha) grad, eps_tilde = eps + gamma g.

    eps, grad_log_p, previous: (B, 2); gamma, alpha: (B, 1), each row its own variant's values
    (alpha = 0 gives the raw gradient). Returns (eps_tilde, g), g being the next state.
    """
    g = alpha * previous + (1 - alpha) * grad_log_p
    return eps + gamma * g, g
