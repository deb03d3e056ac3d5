"""An adaptive Runge-Kutta solve in which every row of a batch takes its own steps.

Many independent ODEs, one per row, share each network evaluation (one batched call over the
rows still running) but not their step sizes, so a row the solver finds hard (a point far from
the data) cannot shrink the steps of the others, and each row's work can be capped on its own.
A solver with one shared step (scipy's `solve_ivp` on the stacked system, or torchdiffeq) steps
every row at the pace of the hardest one; that is what this module replaces.

The method and step control are scipy's RK23 (Bogacki-Shampine 3(2) pair, first-same-as-last;
`scipy.integrate._ivp.rk`): the same tableau, the same initial-step rule (Hairer, Norsett and
Wanner, Sec. II.4), the same safety factor and bounds, the same RMS error norm, taken per row.
Each accepted or rejected step costs three evaluations; the start costs two.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Rhs = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # s (m,), z (m, k) -> dz/ds (m, k)

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0
ERROR_EXPONENT = -1 / 3  # the embedded estimator is second order
EVALUATIONS_PER_STEP = 3


class SolveStopped(Exception):
    """The caller's `should_stop` said so between two evaluations: the solve is abandoned.
    `calls` and `evaluations` say how much work it had done (for the caller's accounts)."""

    def __init__(self, message: str, calls: int = 0, evaluations: int = 0) -> None:
        super().__init__(message)
        self.calls, self.evaluations = calls, evaluations


@dataclass(frozen=True)
class PointwiseSolution:
    z: torch.Tensor  # (N, k) at s_end; a row that did not get there holds its last state
    done: np.ndarray  # (N,) bool: reached s_end with finite values all the way
    reasons: np.ndarray  # (N,) object: why a row is not done, else None
    evaluations: np.ndarray  # (N,) int: evaluations of the right-hand side spent on each row
    calls: int  # batched calls of the right-hand side


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=1).sqrt()


def solve_rk23(
    fun: Rhs,
    s0: float,
    s1: float,
    z0: torch.Tensor,
    rtol: float,
    atol: float,
    max_evaluations: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PointwiseSolution:
    """Integrate dz/ds = fun(s, z) for each row of z0 from s0 to s1 > s0.

    `fun` gets only the rows still running, each at its own s. A row whose derivative turns
    non-finite stops there; a row that would need more than `max_evaluations` evaluations stops
    before passing it; each is marked with its reason. `should_stop` is asked before every
    batched call and ends the solve with SolveStopped.
    """
    n = len(z0)
    device = z0.device
    if s1 == s0:  # nothing to integrate (scipy returns the start likewise)
        zeros = np.zeros(n, dtype=int)
        return PointwiseSolution(
            z0.clone(), np.ones(n, dtype=bool), np.full(n, None, object), zeros, 0
        )
    z = z0.clone()
    s = torch.full((n,), float(s0), dtype=z0.dtype, device=device)
    evaluations = torch.zeros(n, dtype=torch.long, device=device)
    reasons = np.full(n, None, object)
    calls = 0

    def call(rows: torch.Tensor, s_rows: torch.Tensor, z_rows: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        if should_stop is not None and should_stop():
            raise SolveStopped("the solve was stopped", calls, int(evaluations.sum()))
        calls += 1
        evaluations[rows] += 1
        return fun(s_rows, z_rows)

    def retire(rows: torch.Tensor, why: str) -> None:
        reasons[rows.cpu().numpy()] = why

    live = torch.arange(n, device=device)
    f = call(live, s, z)
    h_abs = _initial_step(call, live, s, z, f, s1, rtol, atol)
    finite = torch.isfinite(f).all(dim=1) & torch.isfinite(h_abs)
    retire(live[~finite], "non-finite values")
    live = live[finite]
    rejected = torch.zeros(n, dtype=torch.bool, device=device)

    while len(live):
        if max_evaluations is not None:
            over = evaluations[live] + EVALUATIONS_PER_STEP > max_evaluations
            retire(live[over], f"past the evaluation cap ({max_evaluations}) per point")
            live = live[~over]
            if not len(live):
                break
        s_at, z_at, k1 = s[live], z[live], f[live]
        # scipy's floor: 10 ulps of s; a step below it would not move s at all
        min_step = 10 * (torch.nextafter(s_at, torch.full_like(s_at, math.inf)) - s_at)
        h_abs[live] = torch.maximum(h_abs[live], min_step)
        s_new = torch.minimum(s_at + h_abs[live], torch.full_like(s_at, s1))
        h = (s_new - s_at)[:, None]
        k2 = call(live, s_at + h[:, 0] / 2, z_at + h / 2 * k1)
        k3 = call(live, s_at + 3 * h[:, 0] / 4, z_at + 3 * h / 4 * k2)
        z_new = z_at + h * (2 / 9 * k1 + 1 / 3 * k2 + 4 / 9 * k3)
        k4 = call(live, s_new, z_new)
        error = h * (5 / 72 * k1 - 1 / 12 * k2 - 1 / 9 * k3 + 1 / 8 * k4)
        scale = atol + torch.maximum(z_at.abs(), z_new.abs()) * rtol
        norm = _rms(error / scale)

        bad = ~(torch.isfinite(k2).all(1) & torch.isfinite(k3).all(1) & torch.isfinite(k4).all(1))
        bad |= ~torch.isfinite(norm)
        accepted = (norm < 1) & ~bad
        # scipy's rule: after a rejection, the accepted step does not grow; `rejected` says
        # whether this row's last attempt was turned down
        grow = torch.where(
            norm == 0,
            torch.full_like(norm, MAX_FACTOR),
            (SAFETY * norm.pow(ERROR_EXPONENT)).clamp(max=MAX_FACTOR),
        )
        shrink = (SAFETY * norm.pow(ERROR_EXPONENT)).clamp(min=MIN_FACTOR)
        grow = torch.where(rejected[live], grow.clamp(max=1.0), grow)
        h_abs[live] = h[:, 0].abs() * torch.where(accepted, grow, shrink)
        rejected[live] = ~accepted

        take = live[accepted]
        s[take], z[take], f[take] = s_new[accepted], z_new[accepted], k4[accepted]
        retire(live[bad], "non-finite values")
        finished = accepted & (s_new >= s1)
        stuck = ~accepted & ~bad & (h_abs[live] < min_step)  # scipy: "step size too small"
        retire(live[stuck], "the step size fell below 10 ulps: the solve cannot go on")
        live = live[~(finished | bad | stuck)]

    done = np.array([r is None for r in reasons])
    return PointwiseSolution(z, done, reasons, evaluations.cpu().numpy(), calls)


def _initial_step(
    call: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    rows: torch.Tensor,
    s: torch.Tensor,
    z: torch.Tensor,
    f0: torch.Tensor,
    s1: float,
    rtol: float,
    atol: float,
) -> torch.Tensor:
    """scipy's `select_initial_step` for order 2, per row; one evaluation."""
    interval = s1 - s
    scale = atol + z.abs() * rtol
    d0, d1 = _rms(z / scale), _rms(f0 / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    h0 = torch.minimum(h0, interval)
    f1 = call(rows, s + h0, z + h0[:, None] * f0)
    d2 = _rms((f1 - f0) / scale) / h0
    h1 = torch.where(
        (d1 <= 1e-15) & (d2 <= 1e-15),
        (h0 * 1e-3).clamp(min=1e-6),
        (0.01 / torch.maximum(d1, d2)).pow(1 / 3),
    )
    h = torch.minimum(torch.minimum(100 * h0, h1), interval)
    return torch.where(torch.isfinite(f1).all(dim=1), h, torch.full_like(h, float("nan")))
