"""The oracles through the real server: listed as analytic, picked with model "oracle", batched
beside each other, scored with exact metrics; the 422s name the field and what is offered."""

from __future__ import annotations

import math

import httpx
import pytest


@pytest.fixture
def server(oracle_server: httpx.Client) -> httpx.Client:
    """The session's server of the oracles (tests/servers.py)."""
    return oracle_server


def test_models_lists_the_oracles_as_analytic(server):
    models = {m["name"]: m for m in server.get("/models").json()["models"]}
    assert {"boxes-oracle-improved", "moons-oracle-improved", "moons-oracle"} <= set(models)
    entry = models["moons-oracle-improved"]
    assert entry["objective"] == "oracle" and entry["manifest"]["model"]["analytic"] is True


def test_model_oracle_picks_the_improved_one_and_is_reproducible(server):
    body = {"dataset": "moons", "model": "oracle", "n": 64, "seed": 3, "steps": 20}
    first, again = (server.post("/sample", json=body) for _ in range(2))
    assert first.status_code == 200, first.text
    assert first.json()["model_name"] == "moons-oracle-improved"
    assert first.json()["samples"] == again.json()["samples"]


def test_cfg_on_the_boxes_oracle_stays_in_its_box(server):
    r = server.post(
        "/sample",
        json={
            "dataset": "boxes",
            "model": "oracle",
            "variant": "cfg",
            "class": "right",
            "scale": 1.0,
            "n": 200,
            "seed": 0,
        },
    )
    assert r.status_code == 200, r.text
    inside = [1.0 - 0.05 <= x <= 3.05 and abs(y) <= 1.05 for x, y in r.json()["samples"]]
    assert sum(inside) / len(inside) > 0.97


def test_evaluate_on_the_oracle_reports_exact_metrics(server):
    r = server.post(
        "/evaluate",
        json={"dataset": "boxes", "model": "oracle", "n": 2000, "seed": 1, "log_p_samples": 0},
    )
    assert r.status_code == 200, r.text
    exact = r.json()["exact"]
    assert exact["support_fraction"] > 0.97
    assert abs(exact["mean_log_p_data"] - exact["data_mean_log_p"]) < 1e-9  # uniform boxes
    assert exact["forward_kl_bits"] is not None and abs(exact["forward_kl_bits"]) < 0.2
    metrics = server.get("/metrics").text
    assert 'sampler_exact_support_fraction{dataset="boxes",model="boxes-oracle-improved"' in metrics


def test_the_oracle_refuses_what_it_cannot_serve(server):
    r = server.post(
        "/sample",
        json={"dataset": "boxes", "model": "oracle", "variant": "autoguidance", "class": 0, "n": 8},
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"][-1] in ("model", "guide_model") and "allowed" in detail
    r = server.post("/sample", json={"dataset": "line", "model": "oracle", "n": 8})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == "model"
    assert "boxes" in r.text and "moons" in r.text  # the datasets that have one


def test_the_density_grid_is_normalised_and_its_bad_input_named(server):
    grid = server.get("/datasets/moons/density?resolution=64").json()
    cell = (2 * grid["bound"] / grid["resolution"]) ** 2
    mass = sum(math.exp(v) for row in grid["log_p"] for v in row if v is not None) * cell
    assert abs(mass - 1) < 1e-5 and grid["noise"] == 2 * grid["bound"] / 64  # log p to 4 places
    cases = [
        ("/datasets/line/density?class=left", "class"),
        ("/datasets/boxes/density?w=2", "w"),
        ("/datasets/boxes/density?class=middle", "class"),
        ("/datasets/boxes/density?resolution=5000", "resolution"),
        ("/datasets/boxes/density?class=left&w=11", "w"),
        ("/datasets/moons/density?bound=2", "bound"),  # mass beyond the grid
        ("/datasets/moons/density?bound=0.5", "bound"),
    ]
    for path, name in cases:
        r = server.get(path)
        assert r.status_code == 422, (path, r.text)
        detail = r.json()["detail"][0]
        assert detail["loc"][-1] == name, (path, detail)
