"""Guidance variants (SPEC.md "Guidance variants"): one registry, one small function each.

The paper's variants: a guided step is eps_tilde = eps + gamma_t * g_t (its eq. 3 and 5), where
g_t is a density gradient, optionally smoothed per row (eq. 5), and t counts down from T-1 to 0.
Which gradient is a choice per request (issue 12): `head`, the paper's density head
grad_x log p_hat(x_t); `score`, the model's own score -eps / sigma_t (no extra pass, any
model); `energy`, an energy model's exact grad_x E (core/energy.py; equal to its score by
construction). With g the score, eps + gamma g = eps (1 - gamma_t / sigma_t): a rescaling of
the score, which flattens the samples toward low density for gamma > 0 and sharpens them
toward the modes for gamma < 0. A new variant of this kind is one gamma function plus one
`register` line.

Two more kinds (core/density_guidance.py): `density` (Density Guidance: per-row log-density
control on the ODE) and `prior` (Prior Guidance: the latent's norm set to a quantile); their
scale is the quantile q.

And guidance of class-conditional models (issue 15), whose scale is the weight w:
eps_w = eps_ref + w (eps(x, c) - eps_ref). `cfg` (classifier-free guidance, Ho & Salimans 2022)
takes eps_ref = eps(x, null), the same network's unconditional prediction; `autoguidance`
(Karras et al. 2024) the prediction eps_guide(x, c) of a smaller, shorter-trained model of the
same parameterisation. w = 1 is the conditional model unguided, w = 0 the reference alone.
Chidambaram et al. (2024) write the guided score (1 + w') grad log p(x | c) - w' grad log p(x):
their w' is our w - 1. Either can be limited to noise levels sigma in [sigma_lo, sigma_hi]
(a guidance interval, Kynkaanniemi et al. 2024; sigma = sqrt(1 / alpha_bar - 1), EDM's),
outside which a step runs the conditional model alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from service.core.errors import RequestError

# The guidance scales the service takes. The CLI checks this; the API its own copy in
# service/api/settings.py (tests/test_cli.py keeps the two equal).
SCALE_RANGE = (-10.0, 10.0)

GammaFn = Callable[[torch.Tensor, int, float], torch.Tensor]  # (t (B,), T, scale) -> (B,)
QUANTILE_SCALE = (0.001, 0.999)  # the scale of `density` and `prior`: a quantile q

GRADIENTS = {
    "head": "The paper's density head, grad_x log p_hat (density models).",
    "score": "The model's own score, -eps / sigma_t: no extra network pass (every model).",
    "energy": "The energy model's exact grad_x E, its score by construction (energy models).",
}
# what each objective's model offers, its default first (plain models have no default: the
# paper's variants were defined on a density model, so a plain one must ask for `score`)
OFFERED = {
    "plain": ("score",),
    "density": ("head", "score"),
    "energy": ("energy", "score"),
    "conditional": ("score",),
}
W_RANGE = (0.0, 10.0)  # cfg and autoguidance: the guidance weight w
REFERENCED_KINDS = ("cfg", "autoguidance")  # eps_ref + w (eps(x, c) - eps_ref)


class GuidanceUnavailable(RequestError):
    """A guided variant asked a model for a density gradient it does not offer."""


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
    kind: str = "paper"  # "paper": eps + gamma g; "density", "prior": core/density_guidance.py
    scale_range: tuple[float, float] = SCALE_RANGE
    # the samplers it runs with, its default first; None: every sampler, ddpm by default
    samplers: tuple[str, ...] | None = None

    @property
    def default_sampler(self) -> str:
        return self.samplers[0] if self.samplers else "ddpm"

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
    kind: str = "paper",
    scale_range: tuple[float, float] = SCALE_RANGE,
    samplers: tuple[str, ...] | None = None,
) -> Callable[[GammaFn], GammaFn]:
    def add(gamma: GammaFn) -> GammaFn:
        VARIANTS[name] = Variant(
            name,
            description,
            default_scale,
            gamma,
            formula,
            needs_gradient,
            smoothing,
            kind,
            scale_range,
            samplers,
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


@register(
    "density",
    "Density Guidance (Karczewski et al. 2025) on the probability-flow ODE (sampler heun): "
    "each row's log-density is steered, with the exact 2D divergence, to the q-quantile (the "
    "scale) of the model's log-density of its own samples, or to target_log_p nats.",
    0.5,
    "0 (eta rescales eps per row)",
    needs_gradient=False,
    kind="density",
    scale_range=QUANTILE_SCALE,
    samplers=("heun",),
)
@register(
    "prior",
    "Prior Guidance: the initial latent scaled to the q-quantile (the scale) of its norm's "
    "chi distribution, then a deterministic ODE sampler (ddim eta 0, heun, dpmpp_2m) unchanged.",
    0.5,
    "0 (the latent's norm is set)",
    needs_gradient=False,
    kind="prior",
    scale_range=QUANTILE_SCALE,
    samplers=("heun", "ddim", "dpmpp_2m"),  # ddim with eta 0 only
)
@register(
    "cfg",
    "Classifier-free guidance (Ho & Salimans 2022) on a class-conditional model: eps(x, null) "
    "+ w (eps(x, c) - eps(x, null)), the scale being w (1: the conditional model, 0: the "
    "unconditional). Needs `class`; `guidance_interval` limits it to a range of sigma.",
    3.0,
    "0 (the scale is w)",
    needs_gradient=False,
    kind="cfg",
    scale_range=W_RANGE,
)
@register(
    "autoguidance",
    "Autoguidance (Karras et al. 2024): eps_guide(x, c) + w (eps(x, c) - eps_guide(x, c)), the "
    "guide a smaller, shorter-trained conditional model (`guide_model`; default the dataset's "
    "'guide' recipe). `class` optional; `guidance_interval` as cfg's.",
    2.0,
    "0 (the scale is w)",
    needs_gradient=False,
    kind="autoguidance",
    scale_range=W_RANGE,
)
def _no_gamma(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return torch.zeros_like(t, dtype=torch.float32)


def resolve_gradient(variant: Variant, objective: str, model_name: str, gradient: str | None):
    """The gradient source a request runs with: None for variants without one; raises
    ValueError for an unknown source or one given to a variant that takes none, and
    GuidanceUnavailable naming what the model offers."""
    if gradient is not None and gradient not in GRADIENTS:
        raise RequestError("gradient", "unknown gradient", f"one of {sorted(GRADIENTS)}")
    if not variant.needs_gradient:
        if gradient is not None:
            raise RequestError(
                "gradient",
                f"gradient applies only to the paper's guided variants, not {variant.name!r}",
                "omitted for this variant",
            )
        return None
    offered = OFFERED[objective]
    if gradient is None and objective != "plain":
        return offered[0]
    if gradient not in offered:
        asked = "a density gradient" if gradient is None else f"gradient {gradient!r}"
        raise GuidanceUnavailable(
            "model" if gradient is None else "gradient",
            f"variant {variant.name!r} needs {asked}, and model {model_name!r} (objective "
            f"{objective!r}) offers gradient {' or '.join(repr(g) for g in offered)}",
            f"gradient {' or '.join(offered)} on this model; head on a density model, energy "
            "on an energy model",
        )
    return gradient


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; valid names: {sorted(VARIANTS)}")
    return VARIANTS[name]


def resolve_scale(variant: Variant, scale: float | None) -> float:
    if scale is None:
        return variant.default_scale
    low, high = variant.scale_range
    # NaN would sample NaN everywhere, inf NaN after one step
    if not (math.isfinite(scale) and low <= scale <= high):
        raise RequestError(
            "scale",
            f"scale of variant {variant.name!r} must be a finite number in its range",
            f"[{low:g}, {high:g}]",
        )
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
