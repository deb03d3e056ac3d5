"""Reload, model identity and default models over real HTTP."""

from __future__ import annotations

import json
import shutil
import threading
import time

from service.core.store import sealed
from tests.api.metrics_text import scrape, value
from tests.live_server import live_server

AUTH = {"authorization": "Bearer s3cret"}


def edit_manifest(folder, change, seal=True):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    manifest = sealed(manifest) if seal else manifest
    path.write_text(json.dumps(manifest))
    return manifest


def test_reload_answers_at_once_and_in_flight_work_finishes_on_the_old_model(api_store, tmp_path):
    """Reload used to block ~30 s, then detach the old model with the request unanswered."""
    store = tmp_path / "store"
    shutil.copytree(api_store, store)
    body = {"dataset": "moons", "variant": "fixed", "n": 6144, "seed": 3, "deadline_s": 600}
    # admission off: this tests reload, and on a busy machine admission might refuse the request
    env = {"ADMIN_TOKEN": "s3cret", "MAX_ROWS_PER_STEP": "256", "ADMISSION": "off"}
    with live_server(store, **env) as client:
        old_id = client.post("/sample", json={**body, "n": 4}).json()["model"]
        result = {}
        worker = threading.Thread(
            target=lambda: result.update(r=client.post("/sample", json=body, timeout=600))
        )
        worker.start()
        waited = time.monotonic()
        while value(scrape(client), "sampler_active_rows", dataset="moons") == 0:
            assert worker.is_alive(), result["r"].text
            assert time.monotonic() - waited < 30
            time.sleep(0.05)
        new = edit_manifest(store / "moons-density", lambda m: m.update(note="retrained"))
        started = time.monotonic()
        r = client.post("/admin/reload", headers=AUTH)
        took = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert r.json()["retired"] == ["moons-density"]
        assert r.json()["draining"] == ["moons-density"]
        # it did not wait for the in-flight request: that one still holds rows
        assert value(scrape(client), "sampler_queue_rows", dataset="moons") > 0, took
        assert took < 10, f"reload took {took:.1f} s"
        # new requests go to the new model while the old one drains
        fresh = client.post("/sample", json={**body, "n": 4})
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["model"] == new["id"]
        worker.join(600)
        assert result["r"].status_code == 200, result["r"].text
        assert result["r"].json()["model"] == old_id != new["id"]
        deadline = time.monotonic() + 5
        while value(scrape(client), "sampler_queue_rows", dataset="moons") and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert value(scrape(client), "sampler_queue_rows", dataset="moons") == 0


def test_an_edited_config_is_refused_and_reload_notices_the_fix(api_store, tmp_path):
    """coord_scale 100 -> 300 used to load under the same id; fixing it and reloading did not
    help, because reload compared only the weights' sha256."""
    store = tmp_path / "store"
    shutil.copytree(api_store, store)
    folder = store / "moons-plain"
    original = (folder / "manifest.json").read_text()
    with live_server(store, ADMIN_TOKEN="s3cret") as client:
        good = client.post("/sample", json={"dataset": "moons", "n": 4}).json()["model"]
        edit_manifest(folder, lambda m: m["model"].update(coord_scale=300.0), seal=False)
        assert client.post("/admin/reload", headers=AUTH).json()["retired"] == ["moons-plain"]
        r = client.post("/sample", json={"dataset": "moons", "n": 4})
        assert r.status_code == 503
        assert "moons-plain/manifest.json" in r.json()["detail"]
        assert "does not match its id" in client.get("/models").json()["unavailable"]["moons-plain"]
        (folder / "manifest.json").write_text(original)
        assert client.post("/admin/reload", headers=AUTH).json()["loaded"] == ["moons-plain"]
        assert client.post("/sample", json={"dataset": "moons", "n": 4}).json()["model"] == good
        # a re-saved model with another config is another model: another id
        edit_manifest(folder, lambda m: m["model"].update(time_scale=2.0))
        assert client.post("/admin/reload", headers=AUTH).json()["retired"] == ["moons-plain"]
        assert client.post("/sample", json={"dataset": "moons", "n": 4}).json()["model"] != good


def test_a_broken_default_model_is_refused_not_replaced(api_store, tmp_path):
    """A corrupt moons-plain-improved used to be answered, silently, by moons-plain."""
    store = tmp_path / "store"
    shutil.copytree(api_store, store)
    shutil.copytree(store / "moons-plain", store / "moons-plain-improved")
    edit_manifest(
        store / "moons-plain-improved",
        lambda m: m.update(name="moons-plain-improved", recipe="improved"),
    )
    weights = store / "moons-plain-improved" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    with live_server(store) as client:
        r = client.post("/sample", json={"dataset": "moons", "n": 4})
        assert r.status_code == 503, r.text
        detail = r.json()["detail"]
        assert "moons-plain-improved" in detail and "weights.safetensors" in detail
        assert "moons-plain" in detail.split("explicitly")[-1]
        assert client.get("/variants").json()["defaults"]["moons"]["plain"] == (
            "moons-plain-improved"
        )
        asked = client.post("/sample", json={"dataset": "moons", "n": 4, "model": "moons-plain"})
        assert asked.status_code == 200 and asked.json()["model_name"] == "moons-plain"
        # guided requests are unaffected: their default is the density model
        guided = client.post("/sample", json={"dataset": "moons", "variant": "fixed", "n": 4})
        assert guided.status_code == 200
