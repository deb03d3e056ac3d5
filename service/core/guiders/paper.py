"""The paper's guidance variants (*The pitfalls of density guidance*): eps + gamma_t g_t.

A guided step is eps_tilde = eps + gamma_t g_t (the paper's eq. 3), where g_t is a density
gradient, optionally smoothed per row, g_t = 0.9 g_{t+1} + 0.1 grad (eq. 5), and t counts
down from T-1 to 0. Which gradient is a choice per request: `head`, the paper's density head
grad_x log p_hat(x_t) (one forward and a hand-written backward); `score`, the model's own score
-eps / sigma_t (no extra pass, any model); `energy`, an energy model's exact grad_x E (equal to
its score by construction). With g the score, eps + gamma g = eps (1 - gamma_t / sigma_t): a
rescaling of the score, which flattens the samples toward low density for gamma > 0 and
sharpens them toward the modes for gamma < 0 (docs/DESIGN.md#6-guidance).

A new variant of this kind is one gamma function under `@variant(...)`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from service.core.errors import RequestError
from service.core.guiders.base import GuidedRows, Guider, Pass, PlanContext
from service.core.guiders.registry import register
from service.core.model import ReadyModel

SCALE_RANGE = (-10.0, 10.0)  # the paper's variants' scale s

GammaFn = Callable[[torch.Tensor, int, float], torch.Tensor]  # (t (B,), T, scale) -> (B,)

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
    "oracle": ("score",),  # the exact grad log p_t: -eps* / sigma_t of the oracle
}


class GuidanceUnavailable(RequestError):
    """A guided variant asked a model for a density gradient it does not offer."""


def resolve_gradient(name: str, model: ReadyModel, gradient: str | None) -> str:
    """The gradient source a request runs with, or GuidanceUnavailable naming what the model
    offers."""
    if gradient is not None and gradient not in GRADIENTS:
        raise RequestError("gradient", "unknown gradient", f"one of {sorted(GRADIENTS)}")
    objective = model.objective
    offered = OFFERED[objective]
    if gradient is None and objective != "plain":
        return offered[0]
    if gradient not in offered:
        asked = "a density gradient" if gradient is None else f"gradient {gradient!r}"
        raise GuidanceUnavailable(
            "model" if gradient is None else "gradient",
            f"variant {name!r} needs {asked}, and model {model.name!r} (objective "
            f"{objective!r}) offers gradient {' or '.join(repr(g) for g in offered)}",
            f"gradient {' or '.join(offered)} on this model; head on a density model, energy "
            "on an energy model",
        )
    return gradient


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


def combine(rows: GuidedRows) -> tuple[torch.Tensor, torch.Tensor]:
    if rows.head_gradient is not None:
        grad = rows.head_gradient
    else:  # the model's score, -eps / sigma_t: no extra pass
        sigma = rows.model.schedule.sqrt_one_minus_alpha_bar.float()[rows.t, None]
        grad = -rows.eps / sigma
    previous = rows.state if rows.state.shape[1] else rows.eps.new_zeros(len(rows.eps), 2)
    return guided_eps(rows.eps, grad, rows.column("gamma"), rows.column("alpha"), previous)


def _main(gradient: str | None) -> Pass:
    return Pass.HEAD_GRADIENT if gradient == "head" else Pass.FORWARD


def _objective(gradient: str | None) -> str:
    """The paper's guided variants run on the density model (its head), or on the model the
    gradient names."""
    return {"energy": "energy", "score": "plain"}.get(gradient or "head", "density")


def variant(
    name: str, description: str, default_scale: float, formula: str, smoothing: float | None = None
) -> Callable[[GammaFn], GammaFn]:
    """Register a paper variant whose gamma_t is the decorated function."""

    def add(gamma: GammaFn) -> GammaFn:
        def columns(ctx: PlanContext) -> dict[str, torch.Tensor]:
            t = ctx.stages.t
            return {
                "gamma": gamma(t, ctx.schedule.num_timesteps, ctx.scale),
                "alpha": torch.full((len(t),), smoothing or 0.0, dtype=torch.float32),
            }

        register(
            Guider(
                name,
                description,
                "paper",
                default_scale,
                SCALE_RANGE,
                formula,
                combine=combine,
                main=_main,
                state_width=0 if smoothing is None else 2,
                columns=("gamma", "alpha"),
                plan_columns=columns,
                takes=frozenset({"gradient"}),
                gradient=lambda model, asked: resolve_gradient(name, model, asked),
                objective=_objective,
                smoothing=smoothing,
                gamma=gamma,
            )
        )
        return gamma

    return add


register(
    Guider(
        "baseline",
        "No guidance: plain ancestral DDPM.",
        "paper",
        0.0,
        SCALE_RANGE,
        "0",
        gamma=lambda t, T, scale: torch.zeros_like(t, dtype=torch.float32),
    )
)


@variant("fixed", "Constant guidance strength on the raw density gradient.", 0.1, "s")
def fixed(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return torch.full_like(t, scale, dtype=torch.float32)


@variant("adaptive", "Guidance that grows linearly as t counts down to 0.", 0.2, "s * (1 - t/T)")
def adaptive(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return scale * (1 - t.float() / T)


@variant(
    "smoothed",
    "The paper's eq. 5: decaying strength on an EMA of the density gradient (0.9 old, 0.1 new).",
    0.01,
    "s * (1 - t/T)",
    smoothing=0.9,
)
def smoothed(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return scale * (1 - t.float() / T)


@variant(
    "minimal",
    "Constant, very weak guidance (0.01) on the raw gradient; our reading of the paper's text.",
    0.01,
    "s",
)
def minimal(t: torch.Tensor, T: int, scale: float) -> torch.Tensor:
    return torch.full_like(t, scale, dtype=torch.float32)
