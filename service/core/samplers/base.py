"""The sampler interface: one small record a sampler, like guiders (docs/DESIGN.md#4-samplers).

A sampler turns a schedule's S positions into E network evaluations ("stages"), each with its
own network timestep and a row of at most COEF_WIDTH named coefficients, and a pure `update`
that takes a batch of rows at any stages: x, the (guided) noise prediction eps, fresh noise,
each row's coefficients and its carried state -> next x and state. Everything is per row, so
rows of different samplers, stages and steps share one forward pass (core.step.advance) and a
row's result never depends on its batch. A new sampler is one file of core/samplers holding one
`stages` function, one `update` function and one `register` call, and its module's name in the
package's import list.

Each stage also carries its `renoise` ratio: how much of the eps that re-noises the step
(rather than the one that predicts x_0) reaches x_next, relative to the eps coefficient of the
whole update. An update fed eps + renoise (eps_r - eps) moves as if x_0 were predicted from
eps and the step re-noised with eps_r: what CFG++ needs (core/guiders/cfg_plus_plus.py).

Notation: at position k (counting down, S-1 .. 0) alpha_bar = ab_k and the variance-exploding
noise level sig_k = sqrt(1/ab_k - 1); y = x / sqrt(ab) moves by dy/dsig = eps on the
probability-flow ODE. The position after k = 0 is the clean data (ab = 1, sig = 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from service.core.params import Param
from service.core.schedule import Schedule

COEF_WIDTH = 12
ETA_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class Stages:
    """A sampler's evaluations on one schedule, in evaluation order (first evaluation first)."""

    t: torch.Tensor  # (E,) long: the network timestep
    coef: torch.Tensor  # (E, COEF_WIDTH) float64: the update's coefficients, named by the sampler
    renoise: torch.Tensor  # (E,) float64: see the module docstring
    step: torch.Tensor  # (E,) long: the step (0 = first) each evaluation belongs to


# (schedule, params) -> Stages
StagesFn = Callable[[Schedule, Mapping[str, float]], Stages]
# (x, eps, noise or None, coef (B, COEF_WIDTH), state (B, state_width)) -> (x_next, state)
UpdateFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor],
]


@dataclass(frozen=True)
class Sampler:
    name: str
    description: str
    evaluations: Callable[[int], int]  # network evaluations for S steps
    evaluations_text: str
    stages: StagesFn
    update: UpdateFn
    columns: tuple[str, ...]  # the names of its coefficient columns, in order
    stochastic: bool = False  # draws fresh noise at every evaluation
    state_width: int = 0  # floats per row carried from one evaluation to the next
    params: dict[str, Param] = field(default_factory=dict)
    deterministic: Callable[[Mapping[str, float]], bool] = lambda params: True

    def column(self, name: str) -> int:
        """The index of a named coefficient (density guidance reads Heun's by name)."""
        return self.columns.index(name)


def levels(s: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
    """ab and ab of the next position (1 after k = 0), float64, indexed by position k."""
    ab = s.alpha_bar.double().cpu()
    return ab, torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])


def descending(*tables: torch.Tensor) -> list[torch.Tensor]:
    """Position-indexed tables in evaluation order (k = S-1 first)."""
    return [t.flip(0) for t in tables]


def pad_columns(columns: list[torch.Tensor]) -> torch.Tensor:
    return pad_table(torch.stack(columns, dim=1))


def pad_table(table: torch.Tensor) -> torch.Tensor:
    """(E, c) -> (E, COEF_WIDTH): every plan row has the same width, unused columns zero."""
    if table.shape[1] > COEF_WIDTH:
        raise ValueError(f"a sampler has at most {COEF_WIDTH} coefficients, got {table.shape[1]}")
    return torch.cat([table, table.new_zeros(len(table), COEF_WIDTH - table.shape[1])], dim=1)


def one_per_step(t: torch.Tensor, coef: torch.Tensor, renoise: torch.Tensor) -> Stages:
    """One evaluation a step; `coef` (S, c) in evaluation order, padded here."""
    return Stages(t, pad_table(coef), renoise, torch.arange(len(t)))
