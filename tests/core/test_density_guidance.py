"""Density Guidance and Prior Guidance, checked where the answer is known: Gaussian
data, whose probability-flow ODE is linear, so every sample's exact log-density is closed-form."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy.stats import chi

from service.core import density_guidance as dg
from service.core.energy import DATA_STD
from service.core.errors import RequestError
from service.core.few_step import FEW_STEP
from service.core.offline import collect, sample
from service.core.plan import make_plan
from service.core.plan_columns import COEF, T_COL
from service.core.spec import SampleSpec
from service.core.step import _start, advance, make_chunks

from .gaussian import gaussian_energy_model

CPU = torch.device("cpu")


def exact_log_p(model, x: np.ndarray) -> np.ndarray:
    """log p_0(x) of the Gaussian model under its ODE and the sampler's N(0, I) start: the flow
    y_s = y_0 sqrt((d^2 + s^2) / d^2) from the data (s = 0) to the last level."""
    ab_end = float(model.schedule.alpha_bar[-1])
    s_end2 = 1 / ab_end - 1
    stretch = (DATA_STD**2 + s_end2) / DATA_STD**2
    v_end = 1 + s_end2
    y_end2 = (x.astype(np.float64) ** 2).sum(1) * stretch
    return -0.5 * y_end2 / v_end - math.log(2 * math.pi * v_end) + math.log(stretch)


pytestmark = pytest.mark.usefixtures("every_core")  # tests/conftest.py: why


@pytest.fixture(scope="module")
def gaussian():
    return gaussian_energy_model()


def test_chi_norm_quantile_is_scipys():
    for q in (0.001, 0.1, 0.5, 0.9, 0.999):
        assert dg.chi2_norm_quantile(q) == pytest.approx(chi(2).ppf(q), rel=1e-12)


def test_unguided_tracking_is_the_exact_log_density(gaussian):
    """The calibration's tracked log-density (Heun, exact divergence) at the end of each
    trajectory against the closed form: the estimator behind every target."""
    plan = make_plan(gaussian, SampleSpec(variant="density", scale=0.5, sampler="heun"))
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    tracking = dg.Tracking(dg.start_log_density(gaussian, x, int(plan.stages[-1][T_COL])))
    # the density lane with no target: eta = 1 everywhere
    rows = torch.tensor(plan.stages)
    state = x.new_zeros(len(x), 4)
    for p in range(plan.evaluations - 1, -1, -1):
        coef = rows[p, COEF].expand(len(x), -1)
        t = torch.full((len(x),), int(rows[p, T_COL]))
        no_target = torch.full((len(x),), math.nan)
        eps = dg.density_eps(gaussian, x, t, coef, no_target, tracking, last=p == 0)
        x, state = plan.sampler.update(x, eps, None, coef, state)
    err = tracking.log_p.double().numpy() - exact_log_p(gaussian, x.numpy())
    assert np.abs(err).max() < 0.02


@pytest.fixture(scope="module")
def free_log_p(gaussian) -> np.ndarray:
    """The exact log-density of 4,000 unguided samples: one draw for every quantile below (it
    was drawn again, the same, for each)."""
    free = sample(gaussian, SampleSpec(variant="baseline", n=4000, seed=3, sampler="heun"))
    return exact_log_p(gaussian, free.samples)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_density_guidance_hits_its_quantile(gaussian, free_log_p, q):
    out = sample(gaussian, SampleSpec(variant="density", scale=q, n=600, seed=2, sampler="heun"))
    exact = exact_log_p(gaussian, out.samples)
    assert out.target_log_p == pytest.approx(out.log_p.mean(), abs=0.3)
    assert np.mean(np.abs(exact - out.target_log_p) < 0.5) >= 0.9
    assert np.abs(out.log_p - exact).max() < 0.1  # the reported value is the exact one
    # the target is the q-quantile of the model's samples' log-density
    assert np.quantile(free_log_p, q) == pytest.approx(out.target_log_p, abs=0.15)


def test_density_guidance_takes_an_absolute_target(gaussian):
    for target in (-6.0, -4.0):  # the mode is at -log(8 pi) = -3.22
        out = sample(
            gaussian,
            SampleSpec(variant="density", n=400, seed=4, sampler="heun", target_log_p=target),
        )
        assert out.target_log_p == pytest.approx(target, abs=1e-5)
        assert np.mean(np.abs(exact_log_p(gaussian, out.samples) - target) < 0.5) >= 0.9


def test_prior_guidance_sets_the_starting_norm(gaussian):
    for q in (0.05, 0.5, 0.95):
        chunks = make_chunks(
            make_plan(gaussian, SampleSpec(variant="prior", scale=q, sampler="dpmpp_2m")),
            50,
            0,
            CPU,
        )
        _start(gaussian, chunks[0])
        norms = chunks[0].x.norm(dim=1)
        torch.testing.assert_close(norms, torch.full_like(norms, chi(2).ppf(q)))
    low = sample(
        gaussian, SampleSpec(variant="prior", scale=0.05, n=500, seed=1, sampler="heun")
    ).samples
    high = sample(
        gaussian, SampleSpec(variant="prior", scale=0.95, n=500, seed=1, sampler="heun")
    ).samples
    # a linear flow keeps the norm's order: low-norm latents land near the mode
    assert exact_log_p(gaussian, low).mean() > exact_log_p(gaussian, high).mean() + 2


def test_density_rows_do_not_depend_on_their_batch(plain_model):
    """Density rows mixed, at shuffled stages, with other requests give the numbers they give
    alone (each chunk runs its own autograd pass)."""
    alone = sample(
        plain_model, SampleSpec(variant="density", scale=0.3, n=300, seed=9, sampler="heun")
    )
    mixed = [
        make_chunks(
            make_plan(plain_model, SampleSpec(variant="density", scale=0.3, sampler="heun")),
            300,
            9,
            CPU,
        ),
        make_chunks(
            make_plan(plain_model, SampleSpec(variant="fixed", gradient="score")), 70, 1, CPU
        ),
        make_chunks(
            make_plan(plain_model, SampleSpec(variant="baseline", sampler="heun")), 40, 2, CPU
        ),
    ]
    rng = random.Random(0)
    pending = [c for chunks in mixed for c in chunks]
    while pending:
        advance(plain_model, rng.sample(pending, k=max(1, len(pending) // 2)))
        pending = [c for c in pending if not c.done]
    np.testing.assert_array_equal(collect(mixed[0]), alone.samples)
    got = torch.cat([c.tracking.log_p for c in mixed[0]]).numpy()
    np.testing.assert_array_equal(got, alone.log_p.astype(np.float32))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"variant": "density", "sampler": "ddpm"}, "sampler"),
        ({"variant": "density", "sampler": "ddim"}, "sampler"),
        ({"variant": "prior", "sampler": "ddpm"}, "sampler"),
        ({"variant": "prior", "sampler": "ddim", "sampler_params": {"eta": 0.5}}, "eta"),
        ({"variant": "density", "sampler": "heun", "scale": 1.0}, "scale"),
        ({"variant": "density", "sampler": "heun", "scale": 0.0}, "scale"),
        ({"variant": "density", "sampler": "heun", "target_log_p": math.nan}, "target_log_p"),
        ({"variant": "fixed", "gradient": "score", "target_log_p": -2.0}, "target_log_p"),
        ({"variant": "baseline", "gradient": "score"}, "gradient"),
        ({"variant": "fixed", "gradient": "curvature"}, "gradient"),
        ({"variant": "fixed", "gradient": "head"}, "gradient"),
    ],
)
def test_bad_requests_name_their_field(plain_model, kwargs, field):
    with pytest.raises(RequestError) as e:
        make_plan(plain_model, SampleSpec(**kwargs))
    assert e.value.field == field and e.value.allowed


@pytest.mark.parametrize(
    ("variant", "sampler"),
    [("density", "heun"), ("prior", "heun"), ("fixed", FEW_STEP.sampler)],
)
def test_a_variant_without_a_sampler_runs_on_its_default(density_model, variant, sampler):
    """density and prior refuse ddpm, so a request that names no sampler gets heun, not a 422;
    a variant that runs with every sampler gets the few-step default (core/few_step.py)."""
    assert make_plan(density_model, SampleSpec(variant=variant, steps=10)).sampler.name == sampler
