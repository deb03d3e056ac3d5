import csv
import json

import numpy as np
import pytest

from service.cli import main
from service.core.manifest import ModelKind
from service.worker.ema import ema_decay
from service.worker.recipes import TrainConfig, train_config
from service.worker.train import LOG_COLUMNS, lr_factor


def read_log(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in LOG_COLUMNS}


def test_short_training_lowers_the_loss_and_writes_a_full_manifest(tiny_store):
    manifest = json.loads((tiny_store / "moons-plain" / "manifest.json").read_text())
    log = read_log(tiny_store / "moons-plain" / "loss.csv")
    assert len(log["step"]) == 300
    assert log["loss"][-50:].mean() < 0.8 * log["loss"][:20].mean()
    for key in (
        "sha256",
        "train_seconds",
        "final_loss",
        "eval_loss",
        "kl_bits",
        "versions",
        "created_at",
        "mean_log_p_hat",
        "model",
        "schedule",
        "training",
        "recipe",
    ):
        assert key in manifest, key
    assert manifest["training"]["objective"] == "plain"
    assert manifest["training"]["steps"] == 300
    assert 0.3 < manifest["eval_loss"] < 1.0
    assert manifest["versions"]["torch"].startswith("2.")


def test_density_objective_pushes_log_p_up_without_bound(tiny_store):
    """Eq. 4 is unbounded below (docs/DESIGN.md#3): log p_hat climbs and the loss goes below the
    mse."""
    log = read_log(tiny_store / "moons-density" / "loss.csv")
    assert log["mean_log_p"][-20:].mean() > log["mean_log_p"][:20].mean() + 1.0
    assert (log["loss"][-20:] < log["mse"][-20:]).all()
    manifest = json.loads((tiny_store / "moons-density" / "manifest.json").read_text())
    assert manifest["mean_log_p_hat"] > 1.0


def test_ema_decay_schedule():
    c = TrainConfig()
    assert ema_decay(101, c) == pytest.approx(1 - 2 ** (-2 / 3))
    assert ema_decay(2000, c) < 0.995
    assert ema_decay(3000, c) == 0.995  # d reaches the cap near step 2,930


def test_lr_is_cosine_to_zero_with_optional_warmup():
    c = TrainConfig(steps=100)
    assert lr_factor(c, 0) == 1.0 and lr_factor(c, 50) == pytest.approx(0.5)
    assert lr_factor(c, 100) == pytest.approx(0.0)
    w = TrainConfig(steps=100, warmup_steps=10)
    assert lr_factor(w, 0) == pytest.approx(0.1) and lr_factor(w, 10) == 1.0


def test_names_and_config_validation():
    assert ModelKind("moons", "plain", "paper").name == "moons-plain"
    assert ModelKind("moons", "plain", "improved").name == "moons-plain-improved"
    with pytest.raises(ValueError, match="unknown objective"):
        train_config("paper", "contrastive")
    with pytest.raises(ValueError, match="unknown recipe"):
        train_config("fast", "plain")


def test_cli_trains_into_a_store(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--dataset",
                "line",
                "--steps",
                "30",
                "--out",
                str(tmp_path),
                "--quiet",
                "--kl-samples",
                "500",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["name"] == "line-plain"
    assert (tmp_path / "line-plain" / "weights.safetensors").stat().st_size < 2_000_000
    assert (
        main(["sample", "--model", "line-plain", "--model-store", str(tmp_path), "--n", "8"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["nonfinite"] == 0


@pytest.mark.parametrize("field", ["steps", "batch_size", "eval_batch", "kl_samples"])
def test_a_config_without_work_to_do_is_refused(field):
    with pytest.raises(ValueError, match=f"{field} must be >= 1, got 0"):
        train_config("paper", "plain", **{field: 0})
