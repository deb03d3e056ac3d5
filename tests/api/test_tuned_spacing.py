"""A model's tuned spacing over real HTTP: served as the few-step default where it exists, shown
in /models, refused with a 422 naming why where its side file is broken, and seen by reload."""

from __future__ import annotations

import json
import shutil

import numpy as np

from service.core.few_step import FEW_STEP
from service.core.offline import sample
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore
from service.core.tuned_spacing import SPACING_FILE, TunedSpacing
from tests.live_server import live_server

AUTH = {"authorization": "Bearer s3cret"}
TABLES = {6: (20, 35, 50, 66, 82, 99), 10: (12, 22, 32, 42, 52, 62, 72, 82, 91, 99)}


def test_a_tuned_spacing_is_served_shown_and_reloaded(api_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(api_store, root)
    store = CheckpointStore(root)
    model_id = store.read_manifest("moons-plain")["id"]
    path = store.save_tuned_spacing("moons-plain", TunedSpacing(model_id, FEW_STEP.sampler, TABLES))
    model = store.load_ready("moons-plain")
    body = {"dataset": "moons", "model": "moons-plain", "n": 64, "seed": 3}
    with live_server(root, ADMIN_TOKEN="s3cret") as client:
        shown = {m["name"]: m for m in client.get("/models").json()["models"]}["moons-plain"]
        assert shown["tuned_spacing"]["tables"] == {str(k): list(v) for k, v in TABLES.items()}
        # only steps named: the few-step default on the tuned spacing, exactly the offline run
        got = client.post("/sample", json={**body, "steps": 6}).json()
        assert (got["sampler"], got["spacing"]) == (FEW_STEP.sampler, "tuned")
        spec = SampleSpec(n=64, seed=3, steps=6, sampler=FEW_STEP.sampler, spacing="tuned")
        want = sample(model, spec).samples
        np.testing.assert_array_equal(np.array(got["samples"], dtype=np.float32), want)
        # an edit that is not re-sealed: reload sees it, and the spacing is refused, saying why
        raw = json.loads(path.read_text())
        raw["tables"]["6"][0] = 21
        path.write_text(json.dumps(raw))
        assert client.post("/admin/reload", headers=AUTH).json()["loaded"] == ["moons-plain"]
        shown = {m["name"]: m for m in client.get("/models").json()["models"]}["moons-plain"]
        assert shown["tuned_spacing"] is None and SPACING_FILE in shown["tuned_spacing_error"]
        r = client.post("/sample", json={**body, "steps": 6, "spacing": "tuned"})
        assert r.status_code == 422 and "spacing" in r.text and "sha256" in r.text
        got = client.post("/sample", json={**body, "steps": 6}).json()
        assert (got["sampler"], got["spacing"]) == (FEW_STEP.sampler, FEW_STEP.fallback_spacing)
