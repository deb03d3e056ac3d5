import json
import shutil

import pytest
import torch

from service.core.network import Denoiser
from service.core.schedule import ScheduleConfig
from service.core.store import MANIFEST, WEIGHTS, CheckpointError, CheckpointStore, sealed


@pytest.fixture
def store(tmp_path, tiny_store):
    shutil.copytree(tiny_store, tmp_path / "s")
    return CheckpointStore(tmp_path / "s")


def test_list_and_roundtrip(store):
    assert store.names() == ["moons-density", "moons-plain"]
    ckpt = store.load("moons-plain")
    assert ckpt.manifest.raw["dataset"] == "moons" and len(ckpt.manifest.raw["sha256"]) == 64
    again = CheckpointStore(store.root).save(
        "copy", ckpt.network, ckpt.schedule, "moons", ckpt.manifest.raw["training"]
    )
    reloaded = store.load("copy")
    for (k, a), (_, b) in zip(
        ckpt.network.state_dict().items(), reloaded.network.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    assert again["sha256"] == reloaded.manifest.sha256
    assert not list(store.root.rglob("*.tmp"))  # no temporary files left behind


def test_tampered_weights_are_rejected_naming_the_file(store):
    path = store.root / "moons-plain" / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"moons-plain/weights.safetensors: sha256"):
        store.load("moons-plain")


def test_truncated_weights_are_rejected(store):
    path = store.root / "moons-plain" / WEIGHTS
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="half-written"):
        store.load("moons-plain")


def test_config_mismatch_is_rejected(store):
    path = store.root / "moons-plain" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["model"]["hidden_dim"] = 128
    path.write_text(json.dumps(sealed(manifest)))  # sealed: only the shapes can catch it
    with pytest.raises(CheckpointError, match="tensors do not match the model config"):
        store.load("moons-plain")
    manifest["model"]["depth"] = 3
    path.write_text(json.dumps(sealed(manifest)))
    with pytest.raises(CheckpointError, match="unknown keys"):
        store.load("moons-plain")


def test_bad_manifests_are_rejected(store):
    path = store.root / "moons-plain" / MANIFEST
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="moons-plain/manifest.json: unreadable"):
        store.load("moons-plain")
    path.write_text(json.dumps({"format_version": 1}))
    with pytest.raises(CheckpointError, match="manifest lacks"):
        store.load("moons-plain")
    with pytest.raises(CheckpointError, match="missing"):
        store.load("nothing-here")


def test_non_finite_weights_are_rejected(store, tiny_store):
    net = Denoiser()
    with torch.no_grad():
        net.output.weight[0, 0] = float("nan")
    store.save("broken", net, ScheduleConfig(), "moons", {"objective": "plain"})
    with pytest.raises(CheckpointError, match="non-finite"):
        store.load("broken")


def test_invalid_names_are_refused(store):
    with pytest.raises(ValueError, match="invalid model name"):
        store.path("../etc")


def test_written_files_are_readable_by_others(store, tiny_store):
    ckpt = store.load("moons-plain")
    store.save("perm", ckpt.network, ckpt.schedule, "moons", {"objective": "plain"})
    for f in (store.root / "perm").iterdir():
        assert f.stat().st_mode & 0o044 == 0o044, f


def test_an_edited_config_is_refused_naming_the_manifest(store):
    """A bug: coord_scale 100 -> 300 loaded under the same id and sampled garbage."""
    path = store.root / "moons-plain" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["model"]["coord_scale"] *= 3
    path.write_text(json.dumps(manifest))
    with pytest.raises(
        CheckpointError, match=r"moons-plain/manifest.json: .*does not match its id"
    ):
        store.load("moons-plain")


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["model"].update(time_scale=2.0),
        lambda m: m["schedule"].update(num_timesteps=50),
        lambda m: m["training"].update(objective="density"),
        lambda m: m.update(dataset="line"),
        lambda m: m.update(sha256="0" * 64),
    ],
)
def test_the_id_covers_weights_and_every_config(store, edit):
    manifest = store.read_manifest("moons-plain")
    changed = json.loads(json.dumps(manifest))
    edit(changed)
    assert sealed(changed)["id"] != manifest["id"]


def test_a_manifest_without_an_id_is_refused(store):
    path = store.root / "moons-plain" / MANIFEST
    manifest = json.loads(path.read_text())
    del manifest["id"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest lacks \['id'\]"):
        store.load("moons-plain")


def test_a_manifest_in_another_models_folder_is_refused(store):
    shutil.copytree(store.root / "moons-plain", store.root / "moons-plain-improved")
    with pytest.raises(CheckpointError, match="names 'moons-plain', not 'moons-plain-improved'"):
        store.load("moons-plain-improved")


def test_a_sealed_manifest_with_an_unknown_objective_is_refused(store):
    path = store.root / "moons-plain" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["training"]["objective"] = ["plain"]  # unhashable: would break the registry
    path.write_text(json.dumps(sealed(manifest)))
    with pytest.raises(CheckpointError, match="unknown objective"):
        store.load("moons-plain")


def test_a_manifest_of_another_format_version_is_refused_naming_both(store):
    path = store.root / "moons-plain" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 1
    path.write_text(json.dumps(sealed(manifest)))  # sealed: only the version is wrong
    with pytest.raises(CheckpointError, match=r"moons-plain/manifest.json: format_version 1, "):
        store.load("moons-plain")
    with pytest.raises(CheckpointError, match="expected 2"):
        store.read_manifest("moons-plain")


@pytest.mark.parametrize("where", ["../classifier.safetensors", "sub/classifier.safetensors", "/"])
def test_a_classifier_side_file_outside_its_folder_is_refused(conditional_store, tmp_path, where):
    """The manifest names the side file; a name that leaves the model's folder (or goes below
    it) is refused before anything is read, even with the right bytes there."""
    name = "gaussians-conditional-improved"
    folder = tmp_path / "s" / name
    shutil.copytree(conditional_store / name, folder)
    named = str(tmp_path / "elsewhere.safetensors") if where == "/" else where
    placed = folder / named  # an absolute `named` wins over `folder`
    placed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "classifier.safetensors", placed)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["classifier"]["file"] = named
    (folder / MANIFEST).write_text(json.dumps(sealed(manifest)))
    with pytest.raises(CheckpointError, match=f"{name}/manifest.json: classifier file must be in"):
        CheckpointStore(tmp_path / "s").load(name)
