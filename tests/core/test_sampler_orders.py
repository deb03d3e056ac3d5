"""Every sampler against a known answer: N(0, DATA_STD^2 I) data, whose exact score the
zeroed energy model gives (tests/core/gaussian.py), on a 1,000-step log-SNR grid so that a
run's timesteps are where its spacing wants them (the shipped models' 100-step grid rounds
them, which blurs an order measured over a few doublings).

- Deterministic samplers converge to the probability-flow ODE's exact endpoint, known in closed
  form: y(sig) = y_T sqrt(DATA_STD^2 + sig^2) / sqrt(DATA_STD^2 + sig_T^2) in y = x / sqrt(ab).
  The order each promises is measured from the error at S and 2S steps.
- Stochastic samplers converge in distribution: their samples' second moment to DATA_STD^2.
- Identities: Euler ancestral is DDIM at the same eta, update for update (VP and VE forms of
  one step); DPM-Solver++(2M) SDE at eta = 0 is DPM-Solver++(2M).
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from service.core.energy import DATA_STD
from service.core.model import make_ready
from service.core.offline import sample
from service.core.plan import make_plan
from service.core.schedule import make_schedule
from service.core.spec import SampleSpec
from service.core.step import make_chunks

from .gaussian import gaussian_energy_model

N, SEED = 100, 3


@pytest.fixture(scope="module")
def fine_gaussian():
    m = gaussian_energy_model()
    config = replace(m.schedule.config, num_timesteps=1000)
    return make_ready("gaussian-1000", m.network, make_schedule(config), m.manifest)


@pytest.fixture(scope="module")
def exact_endpoint(fine_gaussian):
    m = fine_gaussian
    plan = make_plan(m, SampleSpec(n=N, seed=SEED, steps=10, sampler="ddim"))
    x_T = torch.cat([c.draw() for c in make_chunks(plan, N, SEED, m.device)]).double().numpy()
    sig_T = math.sqrt(1 / float(m.schedule.alpha_bar[-1].double()) - 1)
    return x_T * math.sqrt(1 + sig_T**2) * DATA_STD / math.sqrt(DATA_STD**2 + sig_T**2)


def ode_error(m, exact, sampler: str, steps: int, params: dict) -> float:
    spec = SampleSpec(n=N, seed=SEED, steps=steps, sampler=sampler, sampler_params=params)
    return float(np.abs(sample(m, spec).samples - exact).mean())


# (sampler, parameters, the order of the global error it shows: the multistep solvers start
# with a first-order step, which caps a third-order method's global order near 2)
ORDERS = [
    ("ddim", {"eta": 0.0}, 1.0),
    ("euler_a", {"eta": 0.0}, 1.0),
    ("heun", {}, 2.0),
    ("dpmpp_2m", {}, 2.0),
    ("dpmpp_2m_sde", {"eta": 0.0}, 2.0),
    ("dpmpp_3m_sde", {"eta": 0.0}, 2.0),
    ("unipc", {"order": 1}, 2.0),
    ("unipc", {"order": 2}, 3.0),
]


@pytest.mark.parametrize(("sampler", "params", "order"), ORDERS, ids=lambda v: str(v))
def test_each_deterministic_sampler_gains_the_order_it_promises(
    fine_gaussian, exact_endpoint, sampler, params, order
):
    """Doubling the steps from 20 to 40 divides the error to the exact ODE endpoint by about
    2^order (within 0.35 of the order), and a higher order is ahead of DDIM at 40 steps."""
    coarse = ode_error(fine_gaussian, exact_endpoint, sampler, 20, params)
    fine = ode_error(fine_gaussian, exact_endpoint, sampler, 40, params)
    assert abs(math.log2(coarse / fine) - order) < 0.35
    if order > 1:
        first = ode_error(fine_gaussian, exact_endpoint, "ddim", 40, {"eta": 0.0})
        assert fine < first / 5


def test_unipc_3_is_ahead_of_every_lower_order(fine_gaussian, exact_endpoint):
    """UniPC-3 (the default: UniP-3 with UniC, order 4) reaches the float32 floor by 20 steps,
    where UniPC-2 is still 10x above it."""
    e3 = ode_error(fine_gaussian, exact_endpoint, "unipc", 20, {"order": 3})
    e2 = ode_error(fine_gaussian, exact_endpoint, "unipc", 20, {"order": 2})
    assert e3 < 1e-3 and e3 < e2 / 10
    assert ode_error(fine_gaussian, exact_endpoint, "unipc", 10, {"order": 3}) < e2


STOCHASTIC = [
    ("ddpm", {}),
    ("euler_a", {"eta": 1.0}),
    ("dpmpp_2m_sde", {"eta": 1.0}),
    ("dpmpp_3m_sde", {"eta": 1.0}),
]


@pytest.mark.parametrize(("sampler", "params"), STOCHASTIC, ids=lambda v: str(v))
def test_each_stochastic_sampler_converges_in_distribution(fine_gaussian, sampler, params):
    """The samples' second moment E x^2 reaches DATA_STD^2 = 4 as the steps grow: at 250 steps
    within 4 standard errors (0.51 at this n), and closer than at 10 steps. (At 10 steps DDPM's
    is 1.8: its ancestral step drops the posterior's variance of x_0; DPM-Solver++'s SDE steps
    are at 4.5.)"""
    n = 1000

    def second_moment(steps):
        spec = SampleSpec(n=n, seed=1, steps=steps, sampler=sampler, sampler_params=params)
        return float((sample(fine_gaussian, spec).samples.astype(np.float64) ** 2).mean())

    coarse, fine = second_moment(10), second_moment(250)
    standard_error = DATA_STD**2 * math.sqrt(2 / (2 * n))
    assert abs(fine - DATA_STD**2) < 4 * standard_error
    assert abs(fine - DATA_STD**2) < abs(coarse - DATA_STD**2)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_euler_ancestral_is_ddim_at_the_same_eta(plain_model, eta):
    """sig_up = eta sig' sqrt(1 - sig'^2/sig^2) is DDIM's sigma_t in VE units and sig_down its
    direction term, so the two are one update (to float32 rounding), noise draw for noise draw."""
    for steps in (7, 20):
        specs = [
            SampleSpec(n=300, seed=5, steps=steps, sampler=s, sampler_params={"eta": eta})
            for s in ("euler_a", "ddim")
        ]
        a, b = (sample(plain_model, spec).samples for spec in specs)
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-4)


def test_dpmpp_2m_sde_at_eta_0_is_dpmpp_2m(plain_model):
    specs = [
        SampleSpec(n=300, seed=2, steps=15, sampler="dpmpp_2m_sde", sampler_params={"eta": 0.0}),
        SampleSpec(n=300, seed=2, steps=15, sampler="dpmpp_2m"),
    ]
    a, b = (sample(plain_model, spec).samples for spec in specs)
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-4)
