"""Samplers and likelihood over real HTTP: per-request samplers, GET /samplers, POST /loglik,
nll_bits."""

from __future__ import annotations

import math

import httpx
import numpy as np
import pytest

from service.core.few_step import FEW_STEP
from service.core.likelihood import model_log_likelihood
from service.core.offline import sample
from service.core.samplers import SAMPLERS
from service.core.spacing import SPACINGS
from service.core.spec import SampleSpec
from tests.api.metrics_text import scrape, value

NPY_ACCEPT = {"accept": "application/x-npy"}


def test_samplers_lists_every_sampler_with_its_evaluations(server):
    body = server.get("/samplers").json()
    by_name = {s["name"]: s for s in body["samplers"]}
    assert set(by_name) == set(SAMPLERS) and body["default"] == "ddpm"
    assert by_name["heun"]["evaluations_for_steps"]["10"] == 19
    assert by_name["ddim"]["parameters"]["eta"] == {
        "default": 0.0,
        "minimum": 0.0,
        "maximum": 1.0,
        "description": by_name["ddim"]["parameters"]["eta"]["description"],
    }
    assert sorted(server.get("/variants").json()["samplers"]) == sorted(SAMPLERS)
    assert [sp["name"] for sp in body["spacings"]] == list(SPACINGS)
    assert server.get("/variants").json()["spacings"] == list(SPACINGS)
    assert body["default_spacing"] == "uniform"
    few = body["few_step_default"]
    assert (few["sampler"], few["spacing"]) == (FEW_STEP.sampler, FEW_STEP.spacing)
    assert few["fallback_spacing"] == FEW_STEP.fallback_spacing
    assert set(few["sampler_params"]) == set(SAMPLERS[FEW_STEP.sampler].params)


@pytest.mark.parametrize("spacing", [s for s, sp in SPACINGS.items() if not sp.per_model])
def test_a_spacing_request_equals_the_offline_sampler(server, plain_model, spacing):
    body = {"dataset": "moons", "n": 200, "seed": 6, "steps": 9, "sampler": "dpmpp_2m_sde"}
    r = server.post("/sample", json={**body, "spacing": spacing})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["spacing"] == spacing and got["sampler_params"] == {"eta": 1.0}
    spec = SampleSpec(n=200, seed=6, steps=9, sampler="dpmpp_2m_sde", spacing=spacing)
    want = sample(plain_model, spec).samples
    np.testing.assert_array_equal(np.array(got["samples"], dtype=np.float32), want)
    npy = server.post("/sample", json={**body, "spacing": spacing}, headers=NPY_ACCEPT)
    assert npy.headers["x-spacing"] == spacing and npy.headers["x-sampler-params"] == "eta=1.0"


@pytest.mark.parametrize(
    ("extra", "sampler", "spacing", "steps"),
    [
        ({}, "ddpm", "uniform", 100),  # nothing named: the model's T-step DDPM
        # only steps: the few-step default (this store's models have no tuned spacing)
        ({"steps": 10}, FEW_STEP.sampler, FEW_STEP.fallback_spacing, 10),
        ({"steps": 10, "sampler": "ddpm"}, "ddpm", "uniform", 10),  # a sampler named
        ({"steps": 10, "spacing": "karras"}, "ddpm", "karras", 10),  # a spacing named
        ({"steps": 10, "variant": "prior"}, "heun", "uniform", 10),  # a variant's own
    ],
)
def test_what_a_request_runs_with_when_it_names_less(server, extra, sampler, spacing, steps):
    r = server.post("/sample", json={"dataset": "moons", "n": 20, "seed": 1, **extra})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["sampler"], got["spacing"], got["steps"]) == (sampler, spacing, steps)


@pytest.mark.parametrize(
    ("sampler", "eta", "steps"), [("ddim", 0.3, 20), ("heun", None, 8), ("dpmpp_2m", None, 15)]
)
def test_a_sampler_request_equals_the_offline_sampler(server, plain_model, sampler, eta, steps):
    body = {"dataset": "moons", "n": 300, "seed": 4, "steps": steps, "sampler": sampler}
    if eta is not None:
        body["eta"] = eta
    r = server.post("/sample", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["sampler"] == sampler and got["steps"] == steps
    assert got["evaluations"] == SAMPLERS[sampler].evaluations(steps)
    offline = sample(
        plain_model,
        SampleSpec(n=300, seed=4, steps=steps, sampler=sampler, sampler_params={"eta": eta}),
    )
    np.testing.assert_array_equal(np.array(got["samples"], dtype=np.float32), offline.samples)
    text = scrape(server)
    assert value(text, "sampler_samples_total", dataset="moons", sampler=sampler) >= 300


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        ({"sampler": "lms"}, "sampler", "ddim"),
        ({"spacing": "cosine"}, "spacing", "karras"),
        ({"sampler": "ddim", "eta": 2.0}, "eta", "1"),
        ({"sampler": "heun", "eta": 0.5}, "eta", "only with sampler ddim"),
        ({"sampler": "heun", "steps": 101}, "steps", "1..100"),
    ],
)
def test_bad_sampler_input_is_a_422_naming_the_field(server, extra, field, fragment):
    r = server.post("/sample", json={"dataset": "moons", "n": 4, **extra})
    assert r.status_code == 422, r.text
    assert field in r.text and fragment in r.text


def test_loglik_of_points_matches_the_library(server, plain_model):
    points = [[0.0, 0.5], [1.0, -0.3], [3.0, 3.0]]
    r = server.post("/loglik", json={"dataset": "moons", "model": "moons-plain", "points": points})
    assert r.status_code == 200, r.text
    body = r.json()
    want = model_log_likelihood(plain_model, np.array(points), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(body["log_density"], want.log_density, rtol=0, atol=1e-9)
    assert body["finite"] == [True, True, True] and body["n"] == 3
    assert body["log_density"][2] < min(body["log_density"][:2])  # far from the data
    mean = float(np.mean(want.log_density))
    assert body["bits_per_dim"] == pytest.approx(-mean / (2 * math.log(2)))


def test_loglik_of_heldout_data_sets_the_gauge(server):
    # 30 points: the gauge is the answer's own figure whatever n (200 cost ~20 s of ODE)
    r = server.post("/loglik", json={"dataset": "moons", "n": 30})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n"] == 30 and all(body["finite"]) and body["evaluations"] > 0
    got = value(scrape(server), "sampler_nll_bits_per_dim", dataset="moons")
    assert got == pytest.approx(body["bits_per_dim"])


def test_evaluate_reports_the_models_heldout_nll(server):
    # log_p_samples 0: the samples' log-density (its own test) would cost ~15 s a call here
    body = {"dataset": "moons", "n": 500, "log_p_samples": 0}
    r = server.post("/evaluate", json={**body, "seed": 1})
    assert r.status_code == 200, r.text
    nll = r.json()["nll_bits"]
    assert nll is not None and math.isfinite(nll)
    again = server.post("/evaluate", json={**body, "seed": 2}).json()
    assert again["nll_bits"] == nll  # the model's, not the samples': cached per model id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"points": [[0.0, 1.0]] * 2001}, "points"),
        ({"points": [[0.0, 1e6]]}, "points"),
        ({"points": [[0.0]]}, "points"),
        ({"n": 5000}, "n"),
        ({}, "points"),
        ({"n": 3, "points": [[0.0, 0.0]]}, "points"),
    ],
)
def test_bad_loglik_input_is_a_422_naming_the_field(server, body, field):
    r = server.post("/loglik", json={"dataset": "moons", **body})
    assert r.status_code == 422, r.text
    assert field in r.text and len(r.text) < 4000


def test_non_finite_points_are_refused(server):
    raw = b'{"dataset": "moons", "points": [[NaN, 0.0]]}'
    r = server.post("/loglik", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(("variant", "scale"), [("density", 0.3), ("prior", 0.2)])
def test_density_and_prior_guidance_over_http_are_the_offline_samplers(
    server, plain_model, variant, scale
):
    """Density and Prior Guidance through the server: on the plain model and its default
    sampler (heun), the offline samples bit for bit; density's tracked log-densities and its
    target come back too, and /evaluate scores with them instead of an ODE."""
    body = {"dataset": "moons", "variant": variant, "scale": scale, "n": 120, "seed": 6}
    body["steps"] = 10
    r = server.post("/sample", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["model_name"], got["sampler"], got["scale"]) == ("moons-plain", "heun", scale)
    spec = SampleSpec(variant=variant, scale=scale, n=120, seed=6, steps=10)
    offline = sample(plain_model, spec)
    np.testing.assert_array_equal(np.array(got["samples"], dtype=np.float32), offline.samples)
    # 20 samples' ODE likelihood for prior (~1 s); density's tracked ones need none
    ev = server.post("/evaluate", json={**body, "log_p_samples": 20})
    assert ev.status_code == 200, ev.text
    if variant == "density":
        np.testing.assert_allclose(got["log_p"], offline.log_p, rtol=1e-6)
        assert got["target_log_p"] == pytest.approx(offline.target_log_p)
        assert ev.json()["mean_log_p_method"] == "tracked"
        assert ev.json()["mean_log_p"] == pytest.approx(float(np.mean(offline.log_p)))
    else:  # prior sets the starting norm only: nothing tracked, the ODE scores the samples
        assert got["log_p"] is None and got["target_log_p"] is None
        assert ev.json()["mean_log_p_method"] == "ode" and ev.json()["mean_log_p_n"] == 20


# Far points keep the adaptive solver at tiny steps: this request would hold the likelihood
# thread for many minutes if it were not stopped.
FAR = {"dataset": "moons", "points": [[50.0, -50.0], [-60.0, 70.0]] * 100}
NEAR = {"dataset": "moons", "points": [[0.0, 0.5]]}
# Two far points: admission predicts a solve of two typical points (~3 s), so a 6 s deadline
# admits it, and the far points' ~20,000 evaluations each run into that deadline.
FEW_FAR = {"dataset": "moons", "points": [[50.0, -50.0], [-60.0, 70.0]], "deadline_s": 6.0}


def test_a_passed_loglik_deadline_is_a_504_and_frees_the_solver(server):
    r = server.post("/loglik", json=FEW_FAR)
    assert r.status_code == 504 and "deadline" in r.json()["detail"]
    # the stopped solve no longer holds the thread: a one-point solve is answered at once
    after = server.post("/loglik", json=NEAR, timeout=30)
    assert after.status_code == 200 and after.json()["finite"] == [True]
    assert after.json()["reasons"] == [None]
    assert max(after.json()["point_evaluations"]) <= after.json()["max_evaluations"]


def test_a_loglik_deadline_shorter_than_its_predicted_solve_is_a_422_saying_what_it_needs(
    server,
):
    r = server.post("/loglik", json={**FAR, "deadline_s": 1.0})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "deadline_s"] and "fewer points" in detail["msg"]
    assert detail["allowed"].startswith("deadline_s >= ")


def test_evaluate_s_log_density_keeps_the_request_s_deadline(server):
    """/evaluate's own solve of its samples' log-density stops at the request's deadline (504)
    and frees the solver; it used to run on with no bound."""
    warm = {"dataset": "moons", "n": 50, "log_p_samples": 0}  # the held-out NLL, cached
    assert server.post("/evaluate", json=warm).status_code == 200
    body = {"dataset": "moons", "n": 2000, "log_p_samples": 2000, "deadline_s": 5.0}
    r = server.post("/evaluate", json=body)  # 2,000 samples' solve: about a minute here
    assert r.status_code == 504 and "deadline" in r.json()["detail"], r.text
    after = server.post("/loglik", json=NEAR, timeout=30)
    assert after.status_code == 200 and after.json()["finite"] == [True]


def test_a_client_that_goes_away_stops_its_loglik_solve(server):
    with pytest.raises(httpx.ReadTimeout):
        server.post("/loglik", json=FAR, timeout=1.0)
    after = server.post("/loglik", json=NEAR, timeout=30)
    assert after.status_code == 200 and after.json()["finite"] == [True]


def test_a_loglik_deadline_over_the_servers_maximum_is_a_422(server):
    r = server.post("/loglik", json={**NEAR, "deadline_s": 601.0})
    assert r.status_code == 422 and "deadline_s" in r.text and "600" in r.text
