"""Each endpoint's happy path, every validation error, and the .npy path, over real HTTP."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service.core.data import DATASETS
from service.core.guiders import GUIDERS


def test_health_ready_and_openapi(server):
    assert server.get("/healthz").json() == {"status": "ok"}
    ready = server.get("/readyz").json()
    assert ready["ready"] and "moons-plain" in ready["models"]
    schema = server.get("/openapi.json").json()
    assert {"/sample", "/evaluate", "/variants", "/models"} <= set(schema["paths"])
    assert schema["components"]["schemas"]["SampleRequest"]["examples"]


def test_sample_json(server):
    r = server.post("/sample", json={"dataset": "moons", "n": 50, "seed": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["samples"]) == 50 and all(len(p) == 2 for p in body["samples"])
    assert body["variant"] == "baseline" and body["seed"] == 3 and body["steps"] == 100
    assert body["model_name"] == "moons-plain" and len(body["model"]) == 64
    assert body["nonfinite"] == 0
    t = body["timing"]
    assert 0 <= t["queue_s"] <= t["total_s"] and 0 < t["compute_s"] <= t["total_s"]
    again = server.post("/sample", json={"dataset": "moons", "n": 50, "seed": 3}).json()
    assert again["samples"] == body["samples"]


def test_guided_sample_uses_the_density_model_and_default_scale(server):
    body = server.post("/sample", json={"dataset": "moons", "variant": "adaptive", "n": 8}).json()
    assert body["model_name"] == "moons-density" and body["scale"] == 0.2
    assert isinstance(body["seed"], int)
    scaled = server.post(
        "/sample",
        json={
            "dataset": "moons",
            "variant": "fixed",
            "scale": 0.5,
            "n": 8,
            "steps": 10,
            "model": "density",
        },
    ).json()
    assert scaled["scale"] == 0.5 and scaled["steps"] == 10


def test_model_by_name_and_sha(server):
    models = server.get("/models").json()["models"]
    plain = next(m for m in models if m["name"] == "moons-plain")
    for ref in (plain["name"], plain["id"], "plain"):
        body = server.post("/sample", json={"dataset": "moons", "n": 4, "model": ref}).json()
        assert body["model"] == plain["id"]
    assert plain["manifest"]["id"] == plain["id"] and plain["recipe"] == "paper"
    assert plain["manifest"]["sha256"] == plain["weights_sha256"] != plain["id"]


def test_npy_matches_json(server):
    req = {"dataset": "moons", "variant": "smoothed", "n": 300, "seed": 11}
    js = server.post("/sample", json=req).json()
    r = server.post("/sample", json=req, headers={"accept": "application/x-npy"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npy"
    arr = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == (300, 2)
    np.testing.assert_array_equal(arr, np.array(js["samples"], dtype=np.float32))
    assert r.headers["x-model"] == js["model"] and r.headers["x-seed"] == "11"
    assert r.headers["x-nonfinite"] == "0" and float(r.headers["x-compute-s"]) > 0


def test_evaluate(server):
    r = server.post(
        "/evaluate", json={"dataset": "moons", "n": 2000, "seed": 0, "log_p_samples": 0}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 < body["kl_bits"] < 5 and body["n"] == 2000 and body["k"] == 5
    assert body["nonfinite_fraction"] == 0
    assert body["seconds_per_sample"] == pytest.approx(body["sampling_seconds"] / 2000)


def test_evaluate_mean_log_p_is_the_exact_likelihood_of_its_first_samples(server):
    """/evaluate reports the samples' mean log-density under their model; it must be
    /loglik's answer for the same points (the same samples: same body, same seed)."""
    body = {"dataset": "moons", "n": 300, "seed": 4}
    r = server.post("/evaluate", json={**body, "log_p_samples": 40})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["mean_log_p_method"] == "ode" and got["mean_log_p_n"] == 40
    npy = server.post("/sample", json=body, headers={"accept": "application/x-npy"})
    points = np.load(io.BytesIO(npy.content))[:40].tolist()  # float32 -> exact floats
    want = server.post("/loglik", json={"dataset": "moons", "points": points}).json()
    assert got["mean_log_p"] == pytest.approx(want["mean_log_density"], abs=1e-6)
    off = server.post("/evaluate", json={**body, "log_p_samples": 0}).json()
    assert off["mean_log_p"] is None and off["mean_log_p_n"] == 0
    assert "log_p_samples" in errors(server.post("/evaluate", json={**body, "log_p_samples": 2001}))


def test_variants_lists_every_variant_and_the_loaded_datasets(server):
    body = server.get("/variants").json()
    assert {v["name"] for v in body["variants"]} == set(GUIDERS)
    adaptive = next(v for v in body["variants"] if v["name"] == "adaptive")
    assert adaptive["default_scale"] == 0.2 and len(adaptive["gamma_schedule"]) == 100
    assert adaptive["gamma_schedule"][0] == pytest.approx(0.002)  # t = 99
    assert adaptive["gamma_schedule"][-1] == pytest.approx(0.2)  # t = 0
    assert body["datasets"] == ["moons"]
    assert body["defaults"]["moons"] == {"plain": "moons-plain", "density": "moons-density"}
    assert body["recipes"]["moons"]["plain"] == "paper"


def errors(r):
    assert r.status_code == 422, r.text
    return {tuple(e["loc"])[-1]: e for e in r.json()["detail"]}


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("n", 0, "1 <= n <= 100000"),
        ("n", 100_001, "1 <= n <= 100000"),
        ("n", 2.5, "1 <= n <= 100000"),
        ("steps", 0, "1 <= steps <= 1000"),
        ("steps", 1001, "1 <= steps <= 1000"),
        ("seed", -1, "0 <= seed"),
        ("scale", 11, "-10.0 <= scale <= 10.0, finite"),
        ("scale", "big", "-10.0 <= scale <= 10.0, finite"),
        ("deadline_s", 0, "0 < deadline_s"),
    ],
)
def test_out_of_range_fields_name_the_field_and_range(server, field, value, allowed):
    err = errors(server.post("/sample", json={"dataset": "moons", field: value}))
    assert field in err and allowed in err[field]["allowed"]


def test_non_finite_scale_is_refused(server):
    for literal in ("NaN", "Infinity", "-Infinity"):
        raw = '{"dataset": "moons", "variant": "fixed", "scale": ' + literal + "}"
        r = server.post("/sample", content=raw, headers={"content-type": "application/json"})
        assert "scale" in errors(r)


def test_unknown_names_list_the_valid_ones(server):
    err = errors(server.post("/sample", json={"dataset": "mars"}))
    assert all(name in err["dataset"]["msg"] for name in DATASETS)
    err = errors(server.post("/sample", json={"dataset": "moons", "variant": "turbo"}))
    assert all(name in err["variant"]["allowed"] for name in GUIDERS)
    err = errors(server.post("/sample", json={"dataset": "moons", "colour": "red"}))
    assert "colour" in err and "known fields" in err["colour"]["allowed"]
    err = errors(server.post("/sample", json={"dataset": "moons", "model": "nope"}))
    assert "moons-plain" in err["model"]["msg"]


def test_evaluate_ranges(server):
    assert "k" in errors(server.post("/evaluate", json={"dataset": "moons", "k": 0}))
    assert "n" in errors(server.post("/evaluate", json={"dataset": "moons", "n": 5}))


def test_requests_the_model_cannot_serve(server):
    err = errors(server.post("/sample", json={"dataset": "moons", "steps": 101}))
    assert err["steps"]["allowed"] == "1..100"
    err = errors(
        server.post("/sample", json={"dataset": "moons", "variant": "fixed", "model": "plain"})
    )
    assert "offers gradient 'score'" in err["model"]["msg"]
    assert "score" in err["model"]["allowed"]
    err = errors(
        server.post(
            "/sample",
            json={"dataset": "moons", "variant": "fixed", "model": "plain", "gradient": "energy"},
        )
    )
    assert "offers gradient 'score'" in err["gradient"]["msg"]
    body = {"dataset": "moons", "variant": "density", "sampler": "ddpm", "model": "plain"}
    assert errors(server.post("/sample", json=body))["sampler"]["allowed"] == "heun"
    body = {"dataset": "moons", "variant": "density", "sampler": "heun", "scale": 1.5}
    assert "scale" in errors(server.post("/sample", json=body))
    # the tiny store has no energy model: the gradient's model is absent, a 422 (was a 503)
    body = {"dataset": "moons", "variant": "fixed", "gradient": "energy"}
    assert "energy" in errors(server.post("/sample", json=body))["gradient"]["msg"]
    body = {"dataset": "moons", "variant": "baseline", "gradient": "score"}
    assert "gradient" in errors(server.post("/sample", json=body))
    body = {"dataset": "moons", "variant": "density", "sampler": "heun", "target_log_p": 1e9}
    assert "target_log_p" in errors(server.post("/sample", json=body))
    err = errors(server.post("/sample", json={"dataset": "moons", "deadline_s": 601}))
    assert "deadline_s" in err


def test_unserved_dataset_is_503_naming_the_reason(server):
    r = server.post("/sample", json={"dataset": "dino", "n": 4})
    assert r.status_code == 503 and "dino" in r.json()["detail"]


def test_priority_class_by_size_by_request_and_in_the_metrics(server):
    """The class a request runs in, said in its answer and counted by class."""
    from tests.api.metrics_text import scrape, value

    before = scrape(server)
    small = server.post("/sample", json={"dataset": "moons", "n": 16, "seed": 0}).json()
    asked = {"dataset": "moons", "n": 16, "seed": 0, "priority": "batch"}
    as_batch = server.post("/sample", json=asked).json()
    assert (small["priority"], as_batch["priority"]) == ("interactive", "batch")
    assert small["samples"] == as_batch["samples"]  # the class changes when, never what
    big = server.post("/sample", json={"dataset": "moons", "n": 1025, "seed": 0}).json()
    assert big["priority"] == "batch"
    after = scrape(server)
    rows = "sampler_row_steps_total"
    assert (
        value(after, rows, priority="interactive") - value(before, rows, priority="interactive")
        == 16 * 100
    )
    assert (
        value(after, rows, priority="batch") - value(before, rows, priority="batch")
        == (16 + 1025) * 100
    )
    wait = "sampler_queue_wait_seconds_count"
    assert value(after, wait, priority="batch") - value(before, wait, priority="batch") == 2
    latency = "sampler_request_duration_seconds_count"
    got = value(after, latency, endpoint="sample", priority="interactive")
    assert got - value(before, latency, endpoint="sample", priority="interactive") == 1


def test_interactive_is_refused_above_its_limit(server):
    body = {"dataset": "moons", "n": 1025, "priority": "interactive"}
    r = server.post("/sample", json=body)
    assert r.status_code == 422 and "n <= 1024" in errors(r)["priority"]["allowed"]
    r = server.post("/sample", json={"dataset": "moons", "n": 16, "priority": "urgent"})
    assert "interactive" in errors(r)["priority"]["allowed"]
