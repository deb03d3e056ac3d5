"""Spacings: which of the model's T trained timesteps a respaced run of S steps keeps
(docs/DESIGN.md#4-samplers). One registry of small functions, like samplers and guiders.

A spacing picks S distinct timesteps, always T - 1 and 0 among them (the run starts at the
schedule's largest noise level and ends at its smallest), by where it wants the noise levels:
in the network's time t, in the variance-exploding noise level sig = sqrt(1/ab - 1) as EDM's
rho = 7 rule, or evenly in log sig (log-SNR). The models are trained at integer t only, so a
wanted level is rounded to the timestep nearest in log sig, and collisions are pushed apart to
keep S distinct steps: k-diffusion's `sigma_to_t` with `quantize=True`, not its fractional t.

A new spacing is one `(log_sig (T,) float64, S) -> wanted log sig (S,)` function and one
`register` line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_SPACING = "uniform"
TUNED = "tuned"
KARRAS_RHO = 7.0  # EDM's (Karras et al. 2022, eq. 5) choice for images; its rho -> inf is "logsnr"


@dataclass(frozen=True)
class Spacing:
    name: str
    description: str
    # (log sig of every trained timestep (T,), ascending in t; S) -> the log sig wanted (S,)
    levels: Callable[[torch.Tensor, int], torch.Tensor] | None  # None: evenly in t itself
    per_model: bool = False  # the model's own table (core/tuned_spacing.py), not a formula


SPACINGS: dict[str, Spacing] = {}


def log_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    """log sig = log sqrt(1 / ab - 1) per timestep, float64: the axis spacings are laid on."""
    return (1 / alpha_bar.double() - 1).log() / 2


def register(spacing: Spacing) -> Spacing:
    SPACINGS[spacing.name] = spacing
    return spacing


def get_spacing(name: str) -> Spacing:
    if name not in SPACINGS:
        raise ValueError(f"unknown spacing {name!r}; valid names: {sorted(SPACINGS)}")
    return SPACINGS[name]


def kept_timesteps(alpha_bar: torch.Tensor, steps: int, spacing: str = DEFAULT_SPACING) -> list:
    """The `steps` timesteps (ascending) a run on the schedule with this full `alpha_bar` (T,)
    keeps under `spacing`."""
    T = len(alpha_bar)
    sp = get_spacing(spacing)
    if sp.per_model:
        raise ValueError(f"spacing {spacing!r} is a model's own: ReadyModel.schedule_for has it")
    if sp.levels is None:  # the service's original respacing, kept bit for bit
        evenly = torch.linspace(T - 1, 0, steps, dtype=torch.float64).tolist()
        return sorted({round(v) for v in evenly})
    log_sig = log_sigma(alpha_bar)
    if steps == 1:
        return [T - 1]
    return nearest_distinct(log_sig, sp.levels(log_sig, steps).tolist())


def nearest_distinct(log_sig: torch.Tensor, wanted: list[float]) -> list[int]:
    """Each wanted log sig rounded to the trained timestep nearest in log sig (log sig rises
    with t on every schedule here), ascending and distinct, T - 1 last: a collision is pushed
    up, then back below T - 1."""
    T, steps = len(log_sig), len(wanted)
    kept = sorted(int(torch.argmin((log_sig - w).abs())) for w in wanted)
    for i in range(1, steps):
        kept[i] = max(kept[i], kept[i - 1] + 1)
    kept[-1] = T - 1
    for i in range(steps - 2, -1, -1):
        kept[i] = min(kept[i], kept[i + 1] - 1)
    return kept


def _karras(log_sig: torch.Tensor, steps: int) -> torch.Tensor:
    """sig_i = (sig_max^(1/rho) + i/(S-1) (sig_min^(1/rho) - sig_max^(1/rho)))^rho."""
    lo, hi = math.exp(float(log_sig[0]) / KARRAS_RHO), math.exp(float(log_sig[-1]) / KARRAS_RHO)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    return KARRAS_RHO * (hi + ramp * (lo - hi)).log()


def _logsnr(log_sig: torch.Tensor, steps: int) -> torch.Tensor:
    return torch.linspace(float(log_sig[-1]), float(log_sig[0]), steps, dtype=torch.float64)


register(
    Spacing(
        "uniform",
        "Evenly spaced network timesteps (improved DDPM's respacing): the service's original.",
        None,
    )
)
register(
    Spacing(
        "karras",
        f"Karras et al. (2022, EDM) rho = {KARRAS_RHO:g}: noise levels evenly spaced in "
        "sig^(1/rho), denser at low noise than evenly spaced sig, sparser than log sig.",
        _karras,
    )
)
register(
    Spacing(
        "logsnr",
        "Noise levels evenly spaced in log sig, i.e. in log-SNR (DPM-Solver's 'logSNR' "
        "spacing); on the improved recipe's log-SNR schedule this is nearly 'uniform'.",
        _logsnr,
    )
)
register(
    Spacing(
        TUNED,
        "The model's own: timesteps searched for it at a few step counts and stored beside it "
        "(dgs tune-spacing; /models shows them), interpolated in log sigma for the others "
        "(Align Your Steps' rule). Only for models that have them.",
        None,
        per_model=True,
    )
)
