"""The probability-flow log-likelihood: closed-form Gaussians through the same code, then a model.

For data N(mu, s^2 I) the marginal at noise level sigma (y/sigma coordinates) is
N(mu, (s^2 + sigma^2) I) and the exact noise predictor is eps = sigma (y - mu) / (s^2 + sigma^2),
so the ODE's answer can be compared with log N(y; mu, s^2 I) itself.
"""

import math

import numpy as np
import pytest
import torch

from service.core.data import get_dataset
from service.core.likelihood import (
    SolveStopped,
    bits_per_dim,
    model_log_likelihood,
    noise_levels,
    ode_log_likelihood,
    sampler_prior,
    timestep_at,
    ve_eps,
)
from service.core.offline import sample
from service.core.schedule import ScheduleConfig
from service.core.spec import SampleSpec

MU = np.array([0.5, -1.0])
S = 0.7
SIGMA_MAX = 20.0
# max abs error per point at rtol = atol = 1e-5 with RK23, per point (reached: 2.0e-3 on the
# 4-to-5-s.d. tails, 3e-4 inside them; scipy's shared-step RK23 reaches 1.8e-3)
EXACT_NATS = 2.5e-3


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Thousands of forwards on a few dozen rows: on a shared 2-core machine, a second thread's
    hand-offs made these tests ~10x slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussian_log_prob(var: float, mu: np.ndarray = MU):
    return lambda y: -0.5 * ((y - mu) ** 2).sum(axis=1) / var - math.log(2 * math.pi * var)


def gaussian_eps(y: torch.Tensor, sigma: float) -> torch.Tensor:
    return sigma * (y - torch.from_numpy(MU)) / (S**2 + sigma**2)


def held_out(n: int = 64, seed: int = 5, mu: np.ndarray = MU, s: float = S) -> np.ndarray:
    """Draws from the Gaussian plus three points 4 to 5 standard deviations out."""
    rng = np.random.default_rng(seed)
    tails = np.array([[4.0, 0.0], [0.0, -5.0], [3.0, 3.0]])
    return mu + s * np.concatenate([rng.normal(size=(n, 2)), tails])


def interpolated_sigma(t: torch.Tensor, levels: np.ndarray) -> torch.Tensor:
    """sigma at a continuous t, log-linear between the integer steps: the inverse of timestep_at."""
    log_sigma = np.interp(t.numpy(), np.arange(len(levels)), np.log(levels))
    return torch.from_numpy(np.exp(log_sigma))[:, None]


def test_gaussian_log_likelihood_is_exact():
    y0 = held_out()
    exact = gaussian_log_prob(S**2)(y0)
    prior = gaussian_log_prob(S**2 + SIGMA_MAX**2)
    result = ode_log_likelihood(gaussian_eps, torch.from_numpy(y0), SIGMA_MAX, prior)
    assert result.log_density.dtype == np.float64 and result.finite.all()
    assert np.abs(result.log_density - exact).max() < EXACT_NATS
    assert result.nfev > 0 and result.seconds > 0
    # the error is the solver's: it shrinks with the tolerance
    tight = ode_log_likelihood(gaussian_eps, y0, SIGMA_MAX, prior, rtol=1e-7, atol=1e-7)
    assert np.abs(tight.log_density - exact).max() < EXACT_NATS / 50  # reached: 2.1e-5


def test_batches_give_the_same_answer_as_one_system():
    y0 = held_out(n=10)
    prior = gaussian_log_prob(S**2 + SIGMA_MAX**2)
    one = ode_log_likelihood(gaussian_eps, y0, SIGMA_MAX, prior)
    split = ode_log_likelihood(gaussian_eps, y0, SIGMA_MAX, prior, batch=4)
    np.testing.assert_allclose(split.log_density, one.log_density, atol=EXACT_NATS)


def test_timestep_is_log_linear_in_sigma_and_held_at_zero_below_the_schedule():
    levels = noise_levels(ScheduleConfig(kind="logsnr"))
    assert timestep_at(levels[7], levels) == pytest.approx(7)
    assert timestep_at(math.sqrt(levels[7] * levels[8]), levels) == pytest.approx(7.5)
    assert timestep_at(levels[0] / 10, levels) == 0 and timestep_at(0.0, levels) == 0
    assert timestep_at(levels[-1] * 2, levels) == len(levels) - 1


def test_the_model_mapping_sigma_to_t_recovers_a_gaussian_exactly():
    """eps given as a function of the model's (x, t), as a network would: ve_eps must find t.

    logsnr: sigma(0) = 0.002, so holding t = 0 below it costs ~d sigma0^2 |y-mu|^2 / (2 s^4),
    far below the tolerance (the linear schedule's sigma(0) = 0.01 makes it ~2e-3 at 5 s.d.).
    """
    config = ScheduleConfig(kind="logsnr")
    levels = noise_levels(config)
    mu = torch.from_numpy(MU)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = 1 / (1 + interpolated_sigma(t, levels) ** 2)
        var = alpha_bar * S**2 + 1 - alpha_bar  # the VP marginal N(sqrt(ab) mu, var I)
        return (1 - alpha_bar).sqrt() * (x - alpha_bar.sqrt() * mu) / var

    y0 = held_out()
    sigma_max = float(levels[-1])
    prior = gaussian_log_prob(S**2 + sigma_max**2)
    result = ode_log_likelihood(
        ve_eps(denoise, config), y0, sigma_max, prior, sigma_offset=float(levels[0])
    )
    assert np.abs(result.log_density - gaussian_log_prob(S**2)(y0)).max() < EXACT_NATS


def test_the_sampler_prior_is_exact_for_standard_normal_data():
    """Data N(0, I) stays N(0, I) at every t of a VP process: the sampler's start is exact."""
    config = ScheduleConfig()  # linear, T = 100: sigma_max ~ 1.32
    levels = noise_levels(config)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = 1 / (1 + interpolated_sigma(t, levels) ** 2)
        return (1 - alpha_bar).sqrt() * x

    zero = np.zeros(2)
    y0 = held_out(mu=zero, s=1.0)[:-3]  # within ~3 s.d.: t held at 0 below 0.01 costs < 5e-4
    sigma_max = float(levels[-1])
    prior = sampler_prior(sigma_max)
    np.testing.assert_allclose(prior(y0), gaussian_log_prob(1 + sigma_max**2, zero)(y0))
    result = ode_log_likelihood(
        ve_eps(denoise, config), y0, sigma_max, prior, sigma_offset=float(levels[0])
    )
    assert np.abs(result.log_density - gaussian_log_prob(1.0, zero)(y0)).max() < EXACT_NATS


def test_a_point_whose_eps_turns_non_finite_is_flagged_not_raised():
    def overflowing_eps(y: torch.Tensor, sigma: float) -> torch.Tensor:
        # NaN in rows with y_1 > 500 (only (50, -50) gets there, at sigma ~ 10, midway), with
        # a zero, not NaN, gradient in every other row
        return gaussian_eps(y, sigma) + 0 * torch.sqrt(500 - y[:, :1])

    y0 = np.concatenate([held_out(n=8), [[50.0, -50.0]]])
    prior = gaussian_log_prob(S**2 + SIGMA_MAX**2)
    result = ode_log_likelihood(overflowing_eps, y0, SIGMA_MAX, prior)
    assert result.finite.tolist() == [True] * (len(y0) - 1) + [False]
    assert np.isnan(result.log_density[-1])
    exact = gaussian_log_prob(S**2)(y0[:-1])
    assert np.abs(result.log_density[:-1] - exact).max() < EXACT_NATS


def test_a_point_past_its_evaluation_cap_is_flagged_and_the_others_are_untouched():
    def harder_far_out(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        # a wobble that only rows far out for their noise level feel (y spreads as sigma
        # grows): their steps shrink, the others' do not
        wobble = torch.sin(40 * y) * (y.abs().sum(dim=1, keepdim=True) > 10 * (1 + sigma))
        return gaussian_eps(y, sigma) + wobble

    near = held_out(n=8)
    prior = gaussian_log_prob(S**2 + SIGMA_MAX**2)
    alone = ode_log_likelihood(harder_far_out, near, SIGMA_MAX, prior)
    assert alone.reasons.tolist() == [None] * len(near)
    cap = int(alone.evaluations.max()) + 30
    both = ode_log_likelihood(
        harder_far_out,
        np.concatenate([near, [[30.0, -30.0]]]),
        SIGMA_MAX,
        prior,
        max_evaluations=cap,
    )
    assert both.finite.tolist() == [True] * len(near) + [False]
    assert "evaluation cap" in both.reasons[-1] and both.evaluations[-1] <= cap
    # the near points took exactly their own steps, to the last bit
    assert np.array_equal(both.evaluations[:-1], alone.evaluations)
    assert np.array_equal(both.log_density[:-1], alone.log_density)


def test_the_scipy_solver_caps_a_whole_batch():
    y0 = held_out(n=8)
    prior = gaussian_log_prob(S**2 + SIGMA_MAX**2)

    def solve(**kw):
        return ode_log_likelihood(gaussian_eps, y0, SIGMA_MAX, prior, solver="scipy", **kw)

    free = solve()
    assert free.reasons.tolist() == [None] * len(y0)
    assert np.abs(free.log_density - gaussian_log_prob(S**2)(y0)).max() < EXACT_NATS
    enough = solve(max_evaluations=free.nfev)
    assert enough.finite.all() and np.array_equal(enough.log_density, free.log_density)
    capped = solve(max_evaluations=free.nfev // 2, batch=4)
    assert not capped.finite.any() and np.isnan(capped.log_density).all()
    assert capped.nfev == 3 * (free.nfev // 2)  # 11 points: 3 batches, each stopped at its cap
    assert all("evaluation cap" in r for r in capped.reasons)


def test_should_stop_ends_the_solve_between_evaluations():
    asked = []

    def stop_after_ten() -> bool:
        asked.append(1)
        return len(asked) > 10

    prior = gaussian_log_prob(S**2 + SIGMA_MAX**2)
    with pytest.raises(SolveStopped):
        ode_log_likelihood(
            gaussian_eps, held_out(n=4), SIGMA_MAX, prior, should_stop=stop_after_ten
        )
    assert len(asked) == 11  # asked before every evaluation, and not one evaluation more


def test_bits_per_dim():
    assert bits_per_dim(np.full(5, -2 * math.log(2))) == pytest.approx(1.0)


def test_a_trained_model_prefers_its_data_and_flags_or_bounds_far_points(plain_model):
    data = get_dataset("moons", 48, seed=7)
    far = np.array([[4.0, 4.0], [-4.0, 4.0], [5.0, -3.0], [50.0, -50.0]])
    # the cap stops (50, -50) (it needs ~8,000 evaluations on this model, the others ~3,000)
    result = model_log_likelihood(plain_model, np.concatenate([data, far]), max_evaluations=4_000)
    log_p = result.log_density
    assert result.finite[:51].all()
    assert np.array_equal(result.finite, np.isfinite(log_p))  # a flag, never a bare NaN
    assert log_p[:48].mean() > log_p[48:51].max() + 5
    assert not result.finite[-1] and "evaluation cap (4000)" in result.reasons[-1]


def test_a_far_point_does_not_raise_the_near_points_cost(plain_model):
    """One point far from the data beside held-out points. Each point takes
    its own steps, so the near points' evaluations stay within 5% of their cost
    alone (seen: 1.00; not exactly equal, since a batch's float32 matmuls round differently
    with its size). (The shared-step scipy solve gave them the far point's steps: 3,077
    evaluations for 200 held-out points alone, 8,669 beside (50, -50), on the shipped model.)"""
    near_cost_factor = 1.05
    near = get_dataset("moons", 4, seed=9)
    far = np.array([[50.0, -50.0]])
    cap = 4_000  # the near points need ~3,400 at most; the far one ~8,000: flagged at the cap
    alone = model_log_likelihood(plain_model, near, max_evaluations=cap)
    both = model_log_likelihood(plain_model, np.concatenate([near, far]), max_evaluations=cap)
    assert alone.finite.all() and both.finite[:-1].all()
    assert both.evaluations[:-1].sum() <= near_cost_factor * alone.evaluations.sum()
    assert np.abs(both.log_density[:-1] - alone.log_density).max() < 1e-2
    assert not both.finite[-1] and "evaluation cap" in both.reasons[-1]


def test_tightening_the_tolerance_barely_moves_the_answer(plain_model):
    # two points: each takes its own steps, so more points would only repeat the check; 3e-6,
    # not 1e-6: on this ReLU model a point's evaluations grow ~4x from 1e-5 to 1e-6 (~14,000)
    points = get_dataset("moons", 2, seed=8)
    loose = model_log_likelihood(plain_model, points)  # rtol = atol = 1e-5
    tight = model_log_likelihood(plain_model, points, rtol=3e-6, atol=3e-6)
    assert np.abs(loose.log_density - tight.log_density).max() < 1e-2  # seen: ~2e-3


def test_the_model_s_own_samples_are_likelier_than_a_uniform_box(plain_model):
    samples = sample(plain_model, SampleSpec(n=48, seed=3)).samples
    box = np.random.default_rng(3).uniform(-3, 3, size=(48, 2))
    log_p = model_log_likelihood(plain_model, np.concatenate([samples, box])).log_density
    assert log_p[:48].mean() > log_p[48:].mean() + 1  # seen: -2.9 against -5.0
