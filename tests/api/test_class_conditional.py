"""Class-conditional requests against the real server: cfg, intervals, autoguidance, the class
metrics of /evaluate, and the 422s that name the field and what the model offers."""

import httpx
import numpy as np
import pytest


@pytest.fixture
def server(conditional_server: httpx.Client) -> httpx.Client:
    """The session's server of the tiny conditional store (tests/servers.py)."""
    return conditional_server


def test_cfg_by_class_name_runs_on_the_conditional_model(server):
    r = server.post(
        "/sample",
        json={
            "dataset": "gaussians",
            "variant": "cfg",
            "class": "right",
            "scale": 3.0,
            "n": 64,
            "seed": 1,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "gaussians-conditional-improved"
    assert (body["class"], body["class_name"], body["scale"]) == (1, "right", 3.0)
    assert body["guided_evaluations"] == body["evaluations"] == 100
    same = server.post(
        "/sample",
        json={
            "dataset": "gaussians",
            "variant": "cfg",
            "class": 1,
            "scale": 3.0,
            "n": 64,
            "seed": 1,
        },
    ).json()
    assert same["samples"] == body["samples"]  # the name and the index are one class


def test_without_a_class_a_dataset_runs_its_plain_model(server):
    body = server.post("/sample", json={"dataset": "gaussians", "n": 8}).json()
    assert body["model_name"] == "gaussians-plain" and body["class"] is None


def test_an_interval_runs_fewer_guided_evaluations(server):
    r = server.post(
        "/sample",
        json={
            "dataset": "gaussians",
            "variant": "cfg",
            "class": 0,
            "n": 16,
            "guidance_interval": [0.3, 3.0],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 < body["guided_evaluations"] < body["evaluations"]
    assert body["guidance_interval"] == [0.3, 3.0]


def test_autoguidance_uses_the_datasets_guide_and_says_so_in_npy_headers(server):
    r = server.post(
        "/sample",
        json={"dataset": "gaussians", "variant": "autoguidance", "class": "left", "n": 16},
        headers={"accept": "application/x-npy"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-guide-model"] == "gaussians-conditional-guide"
    assert r.headers["x-class"] == "0" and r.headers["x-class-name"] == "left"


def test_evaluate_reports_the_class_metrics_beside_the_datas(server):
    r = server.post(
        "/evaluate",
        json={
            "dataset": "gaussians",
            "variant": "cfg",
            "class": "left",
            "scale": 2.0,
            "n": 500,
            "log_p_samples": 0,
            "seed": 0,
        },
    )
    assert r.status_code == 200, r.text
    m = r.json()["class_metrics"]
    assert m["class"] == 0 and m["class_name"] == "left"
    assert m["data_support_fraction"] == pytest.approx(0.95, abs=0.005)
    assert 0 <= m["support_fraction"] <= 1 and 0 <= m["classified_fraction"] <= 1
    assert m["mean_reciprocal_probability"] >= 1 and m["class_kl_bits"] is not None
    assert m["classifier_heldout_accuracy"] > 0.85  # the Bayes rule's is 0.923
    plain = server.post(
        "/evaluate", json={"dataset": "gaussians", "n": 200, "log_p_samples": 0}
    ).json()
    assert plain["class_metrics"] is None


@pytest.mark.parametrize(
    ("body", "field", "allowed"),
    [
        ({"variant": "cfg"}, "class", "'left', 'right'"),
        ({"variant": "cfg", "class": "middle"}, "class", "0..1"),
        ({"variant": "cfg", "class": 7}, "class", "0..1"),
        ({"model": "gaussians-plain", "class": 0}, "class", "conditional"),
        ({"variant": "cfg", "class": 0, "scale": 10.5}, "scale", "10"),
        ({"variant": "cfg", "class": 0, "scale": -1.0}, "scale", "[0, 10]"),
        (
            {"variant": "cfg", "class": 0, "guidance_interval": [3.0, 1.0]},
            "guidance_interval",
            "sigma_lo < sigma_hi",
        ),
        ({"variant": "cfg", "class": 0, "guidance_interval": [1.0]}, "guidance_interval", None),
        ({"variant": "baseline", "guidance_interval": [0.1, 1.0]}, "guidance_interval", "omitted"),
        (
            {"variant": "cfg", "class": 0, "guide_model": "gaussians-plain"},
            "guide_model",
            "omitted",
        ),
        (
            {"variant": "autoguidance", "class": 0, "guide_model": "gaussians-plain"},
            "guide_model",
            "schedule",
        ),
        ({"variant": "autoguidance", "class": 0, "guide_model": "nope"}, "guide_model", None),
        ({"variant": "cfg", "class": True}, "class", None),
    ],
)
def test_bad_class_requests_get_a_422_naming_the_field(server, body, field, allowed):
    r = server.post("/sample", json={"dataset": "gaussians", "n": 4, **body})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"][-1] == field or field in detail["loc"], detail
    if allowed:
        assert allowed in detail["allowed"], detail


def test_a_class_on_a_dataset_without_a_conditional_model_is_a_422(server):
    r = server.post("/sample", json={"dataset": "gaussians", "model": "plain", "class": 0, "n": 4})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "class"


def test_mixed_classes_and_weights_in_flight_match_their_solo_runs(server):
    import concurrent.futures as cf

    bodies = [
        {"dataset": "gaussians", "variant": "cfg", "class": c, "scale": w, "n": 300, "seed": i}
        for i, (c, w) in enumerate([(0, 2.0), (1, 5.0), (0, 0.0), (1, 1.0)])
    ]
    solo = [np.array(server.post("/sample", json=b).json()["samples"]) for b in bodies]
    with cf.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: server.post("/sample", json=b).json(), bodies))
    for s, t in zip(solo, together, strict=True):
        np.testing.assert_array_equal(s, np.array(t["samples"]))


def test_the_client_sends_label_as_class_and_reads_it_back(server):
    from service.client import Client

    client = Client(http=server)
    for npy in (False, True):
        got = client.sample(
            "gaussians",
            variant="cfg",
            label="left",
            scale=2.0,
            n=32,
            npy=npy,
            guidance_interval=[0.3, 3.0],
        )
        assert (got.meta.label, got.meta.class_name) == (0, "left")
        assert got.meta.guidance_interval == [0.3, 3.0] and got.meta.guided_evaluations > 0
    ev = client.evaluate("gaussians", variant="cfg", label=1, n=200, log_p_samples=0)
    assert ev.class_metrics["class_name"] == "right"


def test_the_new_guiders_run_with_their_parameters_and_schedules(server):
    base = {"dataset": "gaussians", "class": 0, "n": 64, "seed": 2, "steps": 20}
    for body in (
        {"variant": "apg", "scale": 4.0, "guider_params": {"momentum": -0.3}},
        {"variant": "cfg_plus_plus", "scale": 0.1, "sampler": "ddim"},
        {"variant": "cfg_zero_star", "scale": 3.0, "guider_params": {"zero_init_steps": 2}},
        {"variant": "cfg", "scale": 3.0, "guidance_schedule": "cosine"},
    ):
        r = server.post("/sample", json={**base, **body})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["variant"] == body["variant"] and got["model_name"].endswith(
            "conditional-improved"
        )
        for name, value in body.get("guider_params", {}).items():
            assert got["guider_params"][name] == value
        if body["variant"] == "apg":  # the defaults are filled in and echoed
            assert set(got["guider_params"]) == {"momentum", "norm_threshold", "parallel"}
    weighted = server.post(
        "/sample", json={**base, "variant": "cfg", "guidance_schedule": "cosine"}
    )
    assert weighted.json()["guidance_schedule"] == "cosine"
    # the top noise level has weight 1 under cosine: one evaluation without the reference pass
    assert weighted.json()["guided_evaluations"] == 19
    variants = {v["name"]: v for v in server.get("/variants").json()["variants"]}
    apg = variants["apg"]
    assert apg["parameters"]["norm_threshold"]["exclusive_minimum"] is True
    assert apg["passes"] == ["forward", "unconditional"] and "cosine" in apg["schedules"]
    assert variants["cfg_plus_plus"]["samplers"] == ["ddpm", "ddim", "heun"]
    assert variants["cfg_plus_plus"]["schedules"] == []
    assert variants["fixed"]["passes"] == ["head_gradient"]


@pytest.mark.parametrize("path", ["/sample", "/sample/stream", "/evaluate"])
@pytest.mark.parametrize(
    ("body", "loc", "allowed"),
    [
        ({"variant": "apg", "guider_params": {"momentum": 1.5}}, "momentum", "momentum <= 0.99"),
        ({"variant": "apg", "guider_params": {"norm_threshold": 0}}, "norm_threshold", "0 <"),
        ({"variant": "apg", "guider_params": {"parallel": "x"}}, "parallel", "parallel <= 1"),
        (
            {"variant": "cfg", "guider_params": {"momentum": 0.5}},
            "momentum",
            "only with guider apg",
        ),
        ({"variant": "cfg", "guidance_schedule": "exponential"}, "guidance_schedule", "cosine"),
        (
            {"variant": "cfg", "guidance_schedule": "linear", "guidance_interval": [3.0, 0.3]},
            "guidance_interval",
            "sigma_lo < sigma_hi",
        ),
        ({"variant": "cfg_plus_plus", "guidance_schedule": "linear"}, "guidance_schedule", "omit"),
        ({"variant": "cfg_plus_plus", "sampler": "dpmpp_2m"}, "sampler", "heun"),
        (
            {"variant": "cfg_zero_star", "guider_params": {"zero_init_steps": 500}},
            "zero_init_steps",
            "< 100",
        ),
        (
            {"variant": "cfg", "sampler": "heun", "sampler_params": {"eta": 0.5}},
            "eta",
            "only with sampler ddim",
        ),
    ],
)
def test_bad_guider_parameters_get_a_422_naming_the_field_and_range(
    server, path, body, loc, allowed
):
    r = server.post(path, json={"dataset": "gaussians", "class": 0, "n": 8, **body})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"][-1] == loc, detail
    assert allowed in detail["allowed"], detail
    assert len(r.content) < 4000
