"""The energy objective: eps = -sigma grad E, its inference path, its normaliser,
and the gradient sources the paper's variants take. Known answers come from Gaussian data, whose
energy is exactly the parameterisation's Gaussian term (f = 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from service.core.energy import (
    DATA_STD,
    energy,
    energy_eps,
    energy_log_density,
    grid_normalizer,
)
from service.core.likelihood import model_log_likelihood
from service.core.offline import sample
from service.core.passes import model_eps
from service.core.plan import make_plan
from service.core.spec import SampleSpec
from service.core.step import make_chunks
from service.core.store import CheckpointStore
from service.worker.recipes import get_recipe
from service.worker.train import ENERGY_NETWORK, network_config

from ..conftest import SHIPPED_STORE
from .gaussian import gaussian_energy_model

pytestmark = pytest.mark.usefixtures("every_core")  # tests/conftest.py: why


@pytest.fixture(scope="module")
def energy_model():
    """The shipped moons energy model, written by the real worker (training a tiny one here
    cost a double backward per step for nothing the shipped one does not show)."""
    return CheckpointStore(SHIPPED_STORE).load_ready("moons-energy-improved")


def test_the_worker_writes_an_energy_network(energy_model):
    config = energy_model.network.config
    assert (config.out_dim, config.activation, config.coord_scale) == (1, "silu", 25.0)
    assert energy_model.objective == "energy" and energy_model.energy_coef is not None
    assert network_config(get_recipe("improved"), "energy").out_dim == ENERGY_NETWORK["out_dim"]
    assert math.isfinite(energy_model.manifest["kl_bits"])


def test_fast_inference_equals_autograd(energy_model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(700, 2, generator=g) * 2
    t = torch.randint(0, energy_model.schedule.num_timesteps, (700,), generator=g)
    fast, _ = model_eps(energy_model, x, t, with_gradient=False)
    slow, _ = energy_eps(energy_model.network, energy_model.schedule, x, t, create_graph=False)
    # float32 sums of ~300 terms in two orders: ~1e-3 apart; a wrong term would be O(1)
    torch.testing.assert_close(fast, slow, rtol=2e-3, atol=2e-3)


def test_gaussian_energy_gives_the_exact_noise_prediction():
    model = gaussian_energy_model()
    s = model.schedule
    x = torch.randn(50, 2) * 3
    t = torch.arange(50) * 2
    ab = s.alpha_bar.float()[t, None]
    exact = (1 - ab).sqrt() * x / (ab * DATA_STD**2 + 1 - ab)  # sigma x / Var(x_t)
    torch.testing.assert_close(model_eps(model, x, t, with_gradient=False)[0], exact)
    torch.testing.assert_close(energy_eps(model.network, s, x, t, False)[0], exact)


def test_grid_normalizer_matches_the_gaussian_normaliser():
    model = gaussian_energy_model()
    norm = grid_normalizer(model.network, model.schedule, (-10, -10), (10, 10), spacing=0.05)
    v = float(model.schedule.alpha_bar[0]) * DATA_STD**2 + 1 - float(model.schedule.alpha_bar[0])
    assert norm.log_z == pytest.approx(math.log(2 * math.pi * v), abs=1e-5)  # float32 E
    x = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    exact = -0.5 * (x * x).sum(1) / v - math.log(2 * math.pi * v)
    log_p = energy_log_density(model.network, model.schedule, x, norm)
    torch.testing.assert_close(log_p, exact.double(), rtol=0, atol=1e-5)


def test_ode_likelihood_of_an_energy_model_is_the_gaussian_density():
    """The second, independent likelihood: the probability-flow ODE through eps = -sigma grad E.
    For Gaussian data the flow is linear, y_s = y_0 sqrt((d^2 + s^2) / (d^2 + s_0^2)), so the
    model's likelihood under the sampler's N(0, I) prior is known in closed form."""
    model = gaussian_energy_model()
    x = np.array([[0.0, 0.0], [1.5, -1.0], [-3.0, 2.0]])
    got = model_log_likelihood(model, x, at_level=0).log_density
    ab0, ab_end = float(model.schedule.alpha_bar[0]), float(model.schedule.alpha_bar[-1])
    s0, s_end = math.sqrt(1 / ab0 - 1), math.sqrt(1 / ab_end - 1)
    d2 = DATA_STD**2
    stretch = (d2 + s_end**2) / (d2 + s0**2)
    y_end = x * math.sqrt(1 + s0**2) * math.sqrt(stretch)
    v_end = 1 + s_end**2
    exact = (
        -0.5 * (y_end**2).sum(1) / v_end
        - math.log(2 * math.pi * v_end)
        + math.log(stretch)  # the map's log-determinant, 2 * (1/2) log stretch
        + math.log(1 + s0**2)  # y -> x at the first level
    )
    np.testing.assert_allclose(got, exact, atol=1e-3)


def test_energy_gradient_is_the_score(energy_model):
    """grad E is -eps / sigma by construction, so `energy` and `score` guide alike."""
    a = sample(
        energy_model, SampleSpec(variant="fixed", scale=0.05, n=300, seed=3, gradient="energy")
    )
    b = sample(
        energy_model, SampleSpec(variant="fixed", scale=0.05, n=300, seed=3, gradient="score")
    )
    assert (a.gradient, b.gradient) == ("energy", "score")
    np.testing.assert_array_equal(a.samples, b.samples)
    x = torch.randn(64, 2, requires_grad=True)
    t = torch.full((64,), 10)
    e = energy(energy_model.network, energy_model.schedule, x, t)
    (grad,) = torch.autograd.grad(e.sum(), x)
    eps, _ = energy_eps(energy_model.network, energy_model.schedule, x, t, False)
    sigma = energy_model.schedule.sqrt_one_minus_alpha_bar[10]
    torch.testing.assert_close(grad, -eps / sigma, rtol=1e-5, atol=1e-5)


def test_head_is_not_offered_by_an_energy_model(energy_model):
    with pytest.raises(ValueError, match="offers gradient 'energy' or 'score'"):
        make_plan(energy_model, SampleSpec(variant="fixed", gradient="head"))


def test_the_score_rule_is_a_rescaling_of_eps(plain_model):
    """eps + gamma * (-eps / sigma) = eps (1 - gamma / sigma): one step of `fixed` with the
    score equals a baseline step with eps scaled by that factor (same noise)."""
    scale = 0.004
    guided = make_chunks(
        make_plan(plain_model, SampleSpec(variant="fixed", scale=scale, gradient="score")),
        64,
        5,
        plain_model.device,
    )
    from service.core.step import advance

    advance(plain_model, guided)
    plain = make_chunks(
        make_plan(plain_model, SampleSpec(variant="baseline")), 64, 5, plain_model.device
    )[0]
    x = plain.draw()
    t = plain_model.schedule.timesteps[-1]
    eps, _ = model_eps(plain_model, x, torch.full((64,), int(t)), with_gradient=False)
    sigma = plain_model.schedule.sqrt_one_minus_alpha_bar[-1]
    plan = plain.plan
    coef = torch.tensor([plan.stages[plan.evaluations - 1][:5]]).expand(64, -1)
    expected, _ = plan.sampler.update(x, eps * (1 - scale / sigma), plain.draw(), coef, None)
    torch.testing.assert_close(guided[0].x, expected)


@pytest.mark.parametrize("scale, wider", [(0.05, True), (-0.05, False)])
def test_the_sign_of_gamma_decides_flatten_or_sharpen(scale, wider):
    """On Gaussian data (the exact score), gamma > 0 widens the samples and gamma < 0 narrows
    them: the paper's positive default scales flatten toward low density."""
    model = gaussian_energy_model()
    base = sample(model, SampleSpec(variant="baseline", n=4000, seed=1)).samples.std()
    guided = sample(
        model, SampleSpec(variant="fixed", scale=scale, n=4000, seed=1, gradient="score")
    ).samples.std()
    assert (guided > base * 1.03) if wider else (guided < base * 0.97)


def test_circle_energy_networks_resolve_finer_features():
    """Circle's 0.09-wide blobs: its energy network embeds coordinates at scale 50 (KL 0.249
    bits at 25), every other dataset's at 25; other objectives keep the recipe's."""
    recipe = get_recipe("improved")
    assert network_config(recipe, "energy", "circle").coord_scale == 50.0
    assert network_config(recipe, "energy", "moons").coord_scale == 25.0
    assert network_config(recipe, "plain", "circle") == recipe.model
