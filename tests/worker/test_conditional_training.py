"""The worker's class-conditional models: label dropout, the classifier, the sealed side file."""

import json
import shutil

import pytest
import torch

from service.core.store import CheckpointError, CheckpointStore
from service.worker.train import drop_labels


def test_label_dropout_replaces_about_p_of_the_classes_with_the_null_class():
    labels = torch.randint(0, 2, (100_000,), generator=torch.Generator().manual_seed(0))
    dropped = drop_labels(labels, 2, 0.1, torch.Generator().manual_seed(1))
    null = dropped == 2
    assert null.float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert torch.equal(dropped[~null], labels[~null])


def test_a_conditional_checkpoint_carries_its_classifier_and_refuses_a_tampered_one(
    conditional_store, tmp_path
):
    name = "gaussians-conditional-improved"
    manifest = json.loads((conditional_store / name / "manifest.json").read_text())
    assert manifest["model"]["num_classes"] == 2 and manifest["training"]["label_dropout"] == 0.1
    entry = manifest["classifier"]
    assert entry["file"] == "classifier.safetensors" and len(entry["sha256"]) == 64
    assert 0.85 < entry["heldout_accuracy"] <= 0.93  # the Bayes rule's: 0.923
    assert CheckpointStore(conditional_store).load(name).classifier is not None
    copy = tmp_path / "store"
    shutil.copytree(conditional_store / name, copy / name)
    path = copy / name / "classifier.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="classifier.safetensors: sha256"):
        CheckpointStore(copy).load(name)


def test_conditional_training_needs_a_labelled_dataset():
    from service.worker.recipes import train_config
    from service.worker.train import train

    with pytest.raises(ValueError, match="has no classes"):
        train("dino", train_config("guide", "conditional", steps=1), out="/nonexistent")
