"""Operations over real HTTP: corrupt checkpoints, reload, admin auth, every metric exposed."""

from __future__ import annotations

import json
import shutil

from service.core.store import sealed
from tests.api.metrics_text import scrape, value
from tests.live_server import live_server

METRICS = [
    "sampler_request_duration_seconds",
    "sampler_queue_wait_seconds",
    "sampler_compute_seconds",
    "sampler_batch_rows",
    "sampler_queue_rows",
    "sampler_requests_total",
    "sampler_samples_total",
    "sampler_nonfinite_samples_total",
    "sampler_kl_divergence_bits",
    "sampler_seconds_per_sample",
    "sampler_model_info",
    "sampler_active_rows",
    "sampler_admitted_rows",
    "sampler_steps_total",
]


def test_corrupt_checkpoint_leaves_the_other_datasets_serving(api_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(api_store, store)
    shutil.copytree(store / "moons-plain", store / "line-plain")
    manifest = json.loads((store / "line-plain" / "manifest.json").read_text())
    manifest.update(name="line-plain", dataset="line")
    (store / "line-plain" / "manifest.json").write_text(json.dumps(sealed(manifest)))
    weights = store / "line-plain" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])  # a torn write
    with live_server(store) as client:
        r = client.post("/sample", json={"dataset": "line", "n": 4})
        assert r.status_code == 503
        assert "line-plain/weights.safetensors" in r.json()["detail"]
        assert client.post("/sample", json={"dataset": "moons", "n": 4}).status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200 and "line-plain" in ready.json()["unavailable"]
        assert "sha256" in client.get("/models").json()["unavailable"]["line-plain"]


def test_reload_swaps_a_model_and_needs_the_token(api_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(api_store, store)
    with live_server(store, ADMIN_TOKEN="s3cret") as client:
        before = client.post("/sample", json={"dataset": "moons", "n": 8, "seed": 1}).json()
        assert client.post("/admin/reload").status_code == 401
        bad = client.post("/admin/reload", headers={"authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        # Replace moons-plain with other real weights: the density model's, renamed.
        shutil.rmtree(store / "moons-plain")
        shutil.copytree(store / "moons-density", store / "moons-plain")
        manifest = json.loads((store / "moons-plain" / "manifest.json").read_text())
        manifest["name"] = "moons-plain"
        manifest["training"]["objective"] = "plain"
        manifest = sealed(manifest)
        (store / "moons-plain" / "manifest.json").write_text(json.dumps(manifest))
        auth = {"authorization": "Bearer s3cret"}
        r = client.post("/admin/reload", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["retired"] == ["moons-plain"] and "moons-density" in r.json()["models"]
        after = client.post("/sample", json={"dataset": "moons", "n": 8, "seed": 1}).json()
        assert after["model"] == manifest["id"] != before["model"]
        assert after["samples"] != before["samples"]
        info = scrape(client)
        assert value(info, "sampler_model_info", id=before["model"]) == 0
        assert value(info, "sampler_model_info", id=manifest["id"], name="moons-plain") == 1


def test_admin_is_404_without_a_token(server):
    assert server.post("/admin/reload").status_code == 404


def test_metrics_expose_every_metric_after_traffic(server):
    server.post("/sample", json={"dataset": "moons", "variant": "fixed", "n": 32})
    body = {"dataset": "moons", "variant": "minimal", "n": 500, "log_p_samples": 10}
    server.post("/evaluate", json=body)
    server.post("/sample", json={"dataset": "moons", "n": 0})
    samples = scrape(server)
    names = {name for name, _ in samples}
    for metric in METRICS:
        assert any(n == metric or n.startswith(metric + "_") for n in names), metric
    assert value(samples, "sampler_kl_divergence_bits", dataset="moons", variant="minimal") > 0
    assert value(samples, "sampler_samples_total", dataset="moons", variant="fixed") >= 32
    assert value(samples, "sampler_requests_total", endpoint="sample", status="422") >= 1
    assert (
        value(
            samples,
            "sampler_request_duration_seconds_count",
            endpoint="evaluate",
            dataset="moons",
            variant="minimal",
            status="200",
        )
        >= 1
    )
    assert value(samples, "sampler_model_info", dataset="moons") == 2
    # label values come from closed sets only
    datasets = {dict(ls).get("dataset") for _, ls in samples} - {None}
    assert datasets <= {"circle", "dino", "line", "moons", "none"}
