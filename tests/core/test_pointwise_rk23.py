"""The per-point RK23 against known answers and against scipy's RK23, row by row."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from service.core.pointwise_rk23 import solve_rk23


def decay(s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Each row's first column is its rate k (constant): the others follow dz/ds = -k z, so
    z(s) = z0 exp(-k (s - s0)). The rate travels in the state because `fun` sees only the rows
    still running."""
    rate = z[:, :1]
    return torch.cat([torch.zeros_like(rate), -rate * z[:, 1:]], dim=1)


def reference(s: float, y: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], -y[0] * y[1:]])


def test_each_row_reaches_its_known_answer_and_takes_scipy_s_own_steps():
    z0 = torch.tensor([[1.0, 1.0, 2.0], [3.0, 1.0, -1.0], [10.0, 0.5, 4.0]], dtype=torch.float64)
    sol = solve_rk23(decay, 0.0, 2.0, z0, 1e-8, 1e-8)
    rates = z0[:, :1].numpy()
    exact = z0[:, 1:].numpy() * np.exp(-rates * 2.0)
    assert sol.done.all() and np.abs(sol.z[:, 1:].numpy() - exact).max() < 1e-6
    # a row alone through scipy's RK23 takes the same evaluations (2 at the start, 3 a step)
    for i in range(len(z0)):
        ref = solve_ivp(reference, (0.0, 2.0), z0[i].numpy(), "RK23", rtol=1e-8, atol=1e-8)
        assert sol.evaluations[i] == ref.nfev
        np.testing.assert_allclose(sol.z[i].numpy(), ref.y[:, -1], rtol=1e-9)  # seen: 6e-12
    assert sol.calls == sol.evaluations.max()  # the slowest row's count: rows share calls


def test_an_empty_span_returns_the_start():
    z0 = torch.ones(2, 3, dtype=torch.float64)
    sol = solve_rk23(decay, 1.0, 1.0, z0, 1e-5, 1e-5)
    assert sol.done.all() and torch.equal(sol.z, z0) and sol.calls == 0


def test_a_huge_derivative_still_moves_the_row_to_the_end():
    """A step below half an ulp of s would leave s where it is; the floor of 10 ulps (scipy's)
    keeps the row moving instead of spinning until its cap."""
    sol = solve_rk23(
        lambda s, z: 1e20 * torch.ones_like(z),
        1.0,
        2.0,
        torch.ones(1, 1, dtype=torch.float64),
        1e-5,
        1e-5,
        max_evaluations=3000,
    )
    assert sol.done.all(), sol.reasons
    assert sol.z.item() == pytest.approx(1e20, rel=1e-6)


def test_should_stop_is_asked_before_every_call():
    from service.core.pointwise_rk23 import SolveStopped

    asked = []

    def stop_after_five() -> bool:
        asked.append(1)
        return len(asked) > 5

    with pytest.raises(SolveStopped) as e:
        solve_rk23(
            decay,
            0.0,
            2.0,
            torch.ones(2, 2, dtype=torch.float64),
            1e-8,
            1e-8,
            None,
            stop_after_five,
        )
    assert len(asked) == 6 and e.value.calls == 5 and e.value.evaluations == 10
