"""Oracle models: exact eps from the store's sealed manifests, every sampler and the guiders
the oracle can serve, bit for bit alone and batched, and refused where tampered."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from service.core.errors import RequestError
from service.core.exact.datasets import exact_density
from service.core.offline import sample
from service.core.passes import model_eps
from service.core.plan import make_plan
from service.core.samplers import SAMPLERS
from service.core.spec import SampleSpec
from service.core.step import make_chunks
from service.core.store import MANIFEST, CheckpointError, CheckpointStore, manifest_id
from tests.core.test_batch_invariance import chunks_of, run_alone, run_mixed


@pytest.fixture(scope="module")
def oracle_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracles")
    store = CheckpointStore(root)
    for dataset in ("boxes", "moons", "line"):
        for recipe in ("paper", "improved"):
            store.save_oracle(dataset, recipe)
    return store


def test_the_oracles_eps_is_minus_sigma_times_the_exact_score(oracle_store):
    model = oracle_store.load_ready("moons-oracle-improved")
    assert model.is_oracle and model.network is None and model.num_classes == 2
    x = torch.randn(300, 2)
    t = torch.randint(0, 100, (300,))
    eps, grad = model_eps(model, x, t, True)
    ab = model.schedule.alpha_bar.double()  # float32 in the sampler's table
    assert torch.allclose(model.levels[0] ** 2, ab, rtol=1e-6)
    a, s = model.levels[0][t], model.levels[1][t]
    score = exact_density("moons").score(x.double(), a, s)
    assert eps.dtype == torch.float32
    assert torch.allclose(eps.double(), -s[:, None] * score, rtol=1e-5, atol=1e-6)
    assert torch.allclose(grad.double(), score, rtol=1e-5, atol=1e-6)


def test_oracle_manifests_say_analytic_and_the_paper_one_runs_the_linear_schedule(oracle_store):
    paper = oracle_store.load("line-oracle")
    improved = oracle_store.load("line-oracle-improved")
    assert paper.manifest.raw["model"]["analytic"] is True
    assert (paper.schedule.kind, improved.schedule.kind) == ("linear", "logsnr")
    assert paper.manifest.id != improved.manifest.id


def test_a_tampered_oracle_is_refused(oracle_store, tmp_path):
    store = CheckpointStore(tmp_path)
    manifest = store.save_oracle("line", "paper")
    path = tmp_path / "line-oracle" / MANIFEST
    edited = {**manifest, "dataset": "boxes"}  # edited without re-sealing: the id no longer fits
    path.write_text(json.dumps(edited))
    with pytest.raises(CheckpointError, match="does not match its id"):
        store.load("line-oracle")
    resealed = {**manifest, "sha256": "0" * 64}  # re-sealed, but not this code's density
    path.write_text(json.dumps({**resealed, "id": manifest_id(resealed)}))
    with pytest.raises(CheckpointError, match="fingerprint"):
        store.load("line-oracle")


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_runs_on_the_oracle_and_reaches_the_support(oracle_store, sampler):
    model = oracle_store.load_ready("line-oracle-improved")
    result = sample(model, SampleSpec("baseline", n=400, seed=1, steps=50, sampler=sampler))
    inside = (np.abs(result.samples[:, 0]) <= 2.05) & (np.abs(result.samples[:, 1]) <= 4.05)
    assert inside.mean() > 0.97


def test_oracle_samples_are_reproducible_and_the_same_alone_and_batched(oracle_store):
    model = oracle_store.load_ready("boxes-oracle-improved")
    ours = chunks_of(model, "baseline", None, None, 300, 7)
    alone = run_alone(model, ours)
    requests = [
        chunks_of(model, "baseline", None, None, 300, 7),
        chunks_of(model, "baseline", None, 37, 50, 2),
        [
            c
            for c in make_chunks(
                make_plan(model, SampleSpec("cfg", scale=3.0, label=1)), 60, 3, model.device
            )
        ],
    ]
    mixed = run_mixed(model, requests)
    assert np.array_equal(alone, mixed[0])
    offline = sample(model, SampleSpec("baseline", n=300, seed=7)).samples
    assert np.array_equal(alone, offline)


def test_cfg_on_the_oracle_uses_the_exact_conditionals(oracle_store):
    """w = 1 is the exact class conditional: every sample of class 'right' in its box."""
    model = oracle_store.load_ready("boxes-oracle-improved")
    result = sample(model, SampleSpec("cfg", scale=1.0, label=1, n=500, seed=0))
    x = result.samples
    assert ((x[:, 0] > 0.95) & (x[:, 0] < 3.05) & (np.abs(x[:, 1]) < 1.05)).mean() > 0.98


def test_density_guidance_and_the_paper_variants_run_on_the_oracle(oracle_store):
    model = oracle_store.load_ready("moons-oracle-improved")
    dg = sample(model, SampleSpec("density", scale=0.5, n=64, seed=0, steps=20))
    assert np.isfinite(dg.samples).all()
    paper = sample(model, SampleSpec("fixed", scale=0.05, n=64, seed=0, steps=20))
    assert np.isfinite(paper.samples).all()
    with pytest.raises(RequestError) as e:
        make_plan(model, SampleSpec("density", label=0))
    assert e.value.field == "class"


def test_autoguidance_is_refused_on_the_oracle(oracle_store):
    model = oracle_store.load_ready("boxes-oracle-improved")
    with pytest.raises(RequestError) as e:
        make_plan(model, SampleSpec("autoguidance", scale=2.0, label=0), guide=model)
    assert e.value.field == "model" and "oracle" in str(e.value)


def test_the_oracles_classifier_is_the_exact_posterior(oracle_store):
    model = oracle_store.load_ready("moons-oracle-improved")
    x = torch.tensor([[0.0, 2.0], [1.0, -1.5]])  # on the upper arc, on the lower one
    post = model.classifier(x).exp()
    assert post.argmax(1).tolist() == [0, 1]
    assert math.isclose(float(post.sum(1)[0]), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("variant", ["cfg", "apg", "cfg_plus_plus", "cfg_zero_star"])
def test_the_class_guiders_run_on_the_labelled_oracle(oracle_store, variant):
    model = oracle_store.load_ready("boxes-oracle-improved")
    scale = 0.5 if variant == "cfg_plus_plus" else 2.0  # its scale is l in [0, 1]
    result = sample(model, SampleSpec(variant, scale=scale, label=0, n=64, seed=0, steps=20))
    assert np.isfinite(result.samples).all() and (result.samples[:, 0] < 0).mean() > 0.9


def test_class_metrics_on_the_oracle_score_its_posterior_as_the_bayes_rule(tmp_path):
    """Regression: class metrics read a classifier entry an oracle's manifest has not (500)."""
    from service.core.class_metrics import class_scores

    store = CheckpointStore(tmp_path)
    store.save_oracle("gaussians", "improved")
    model = store.load_ready("gaussians-oracle-improved")
    result = sample(model, SampleSpec("cfg", scale=1.0, label=1, n=200, seed=0, steps=20))
    scores = class_scores(model, result.samples, 1, 5)
    assert abs(scores.classifier_heldout_accuracy - 0.923) < 0.01  # Phi(1 / 0.7)


def test_the_likelihood_ode_on_the_oracle_recovers_the_exact_density(oracle_store):
    """A known answer for the probability-flow likelihood: on the oracle it is the exact log p_0
    up to the prior at t = T - 1 alone (the flow is exact): log N(y_T; 0, 200 I) against the
    true p_data * N(0, 199 I) at the path's end differ by up to ~0.3 nats where the data's mean
    is off the origin (moons' is about (0.5, 0.3) before the affine map). A wrong divergence or
    score would miss by nats."""
    from service.core.data import get_dataset
    from service.core.likelihood import default_solver, model_log_likelihood

    model = oracle_store.load_ready("moons-oracle-improved")
    assert default_solver(model) == "scipy"  # its density is computed one level at a time
    points = get_dataset("moons", 6, seed=8).astype(np.float64)
    ode = model_log_likelihood(model, points, at_level=0).log_density  # scipy's, on oracles
    a, s = (float(v[0]) for v in model.levels)
    exact = exact_density("moons").log_p(torch.tensor(points), a, s).numpy()
    assert np.abs(ode - exact).max() < 0.3
    # the per-point solver (each point at its own noise level) reaches the same answer
    own = model_log_likelihood(model, points, at_level=0, solver="pointwise").log_density
    assert np.abs(own - exact).max() < 0.3 and np.abs(own - ode).max() < 1e-2
