"""The training worker: fit one denoiser, evaluate it, and write it to the checkpoint store.

Reads like the recipe of docs/DESIGN.md#3-the-denoiser-and-objectives: shuffled epochs of the
100,000 points, AdamW with a cosine-decayed learning rate, gradient clipping, an EMA of the
weights, and one of two objectives. The paper's density objective (eq. 4) is unbounded below;
we train it as written and report what it does (the loss log and the manifest carry the mean
log p_hat), never patch it.
"""

from __future__ import annotations

import csv
import io
import math
import platform
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from service.core.classifier import ClassifierConfig
from service.core.data import LABELLED, get_dataset, get_labelled
from service.core.energy import energy_eps
from service.core.evaluation import evaluate
from service.core.manifest import ModelKind
from service.core.model import make_ready
from service.core.network import Denoiser, DenoiserConfig, split_output
from service.core.schedule import Schedule, add_noise, make_schedule
from service.core.spec import SampleSpec
from service.core.store import CheckpointStore
from service.worker.classifier import (
    CLASSIFIER_FILE,
    ClassifierTraining,
    classifier_bytes,
    train_classifier,
)
from service.worker.ema import EMA
from service.worker.recipes import Recipe, TrainConfig, get_recipe

LOG_COLUMNS = ("step", "loss", "mse", "mean_log_p", "lr", "grad_norm")
# mean log p_hat above this means the density head is running away (~7e5 at the end:
# docs/DESIGN.md#3-the-denoiser-and-objectives)
RUNAWAY_LOG_P = 1e3


def predict(
    network: Denoiser,
    schedule: Schedule,
    objective: str,
    x_t: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (eps_hat, log p_hat): the head's output, or for `energy` -sigma grad E and E itself
    (with the graph kept for the double backward when the network is training). `labels`:
    a conditional network's class per row (its null class where dropped)."""
    if objective == "energy":
        return energy_eps(network, schedule, x_t, t, create_graph=network.training)
    return split_output(network(x_t, t, labels=labels))


def drop_labels(
    labels: torch.Tensor, null: int, p: float, generator: torch.Generator
) -> torch.Tensor:
    """Label dropout: each row's class becomes the null class with probability p, so one network
    learns eps(x, c) and eps(x, null) (classifier-free guidance's two predictions)."""
    dropped = torch.rand(len(labels), generator=generator) < p
    return torch.where(dropped, torch.full_like(labels, null), labels)


# The energy network's differences from a recipe's (docs/RESULTS.md, "Energy models"): its eps
# is a gradient, so a ReLU network's would be piecewise constant (moons, 6,000 steps: KL 2.01
# bits with ReLU, 0.29 with SiLU), and the gradient multiplies each coordinate feature by its
# frequency, so finer features cost more than they give (SiLU at scale 100, 50, 25: KL 0.29,
# 0.09, 0.02 on moons; 0.27 and 0.25 on dino at 50 and 25).
# Circle's 16 blobs of radius 0.09 are the finest features: at scale 25 its energy model
# reached KL 0.249 bits (0.196 after twice the training), at 50 0.124 (its plain model: 0.065).
ENERGY_NETWORK = {"out_dim": 1, "activation": "silu", "coord_scale": 25.0}
ENERGY_COORD_SCALE = {"circle": 50.0}


def network_config(recipe: Recipe, objective: str, dataset: str | None = None) -> DenoiserConfig:
    """The energy network outputs one scalar, E's learned part; the others eps (2) + log p_hat.
    A conditional network has a class table of the dataset's classes."""
    if objective == "conditional":
        return replace(recipe.model, num_classes=len(np.unique(get_labelled(dataset, 1000)[1])))
    if objective != "energy":
        return recipe.model
    scale = ENERGY_COORD_SCALE.get(dataset, ENERGY_NETWORK["coord_scale"])
    return replace(recipe.model, **{**ENERGY_NETWORK, "coord_scale": scale})


def objective_loss(
    config: TrainConfig,
    schedule: Schedule,
    eps_hat: torch.Tensor,
    log_p: torch.Tensor,
    eps: torch.Tensor,
    t: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (loss, noise mse, mean log p_hat). density: mse - mean(lambda_t log p_hat), eq. 4;
    plain, energy and conditional: the noise mse alone."""
    mse = F.mse_loss(eps_hat, eps)
    if config.objective != "density":
        return mse, mse, log_p.mean()
    lam = config.density_lambda * (1 - t.float() / schedule.num_timesteps)
    return mse - (lam * log_p).mean(), mse, log_p.mean()


def lr_factor(config: TrainConfig, step: int) -> float:
    """Linear warm-up over warmup_steps, then cosine decay to 0 at the last step."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def batches(rows: int, batch_size: int, generator: torch.Generator):
    """Row indices of shuffled epochs without end, the last batch of an epoch possibly short
    (a DataLoader's)."""
    while True:
        order = torch.randperm(rows, generator=generator)
        for start in range(0, rows, batch_size):
            yield order[start : start + batch_size]


@torch.no_grad()
def eval_loss(
    network: Denoiser,
    schedule: Schedule,
    data: torch.Tensor,
    config: TrainConfig,
    labels: torch.Tensor | None = None,
) -> tuple[float, float]:
    """Noise MSE over the whole dataset with fresh noise and timesteps; also mean log p_hat.
    A conditional model's is its conditional MSE (every row with its class)."""
    g = torch.Generator().manual_seed(config.seed + 1)
    network.eval()
    losses, log_ps = [], []
    for start in range(0, len(data), config.eval_batch):
        x0 = data[start : start + config.eval_batch]
        eps = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, schedule.num_timesteps, (len(x0),), generator=g)
        cls = None if labels is None else labels[start : start + config.eval_batch]
        eps_hat, log_p = predict(
            network, schedule, config.objective, add_noise(schedule, x0, eps, t), t, cls
        )
        losses.append(F.mse_loss(eps_hat, eps).item())
        log_ps.append(log_p.mean().item())
    network.train()
    return float(np.mean(losses)), float(np.mean(log_ps))


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("torch", "numpy", "scipy", "safetensors", "density-guidance-service"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "unknown"
    return found


def loss_csv(rows: list[tuple]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for step, *values in rows:
        writer.writerow([step, *(f"{v:.6g}" for v in values)])
    return buf.getvalue().encode()


def train(
    dataset: str,
    config: TrainConfig,
    out: str | Path = "model_store",
    name: str | None = None,
    progress: bool = True,
    recipe: Recipe | None = None,
) -> dict[str, Any]:
    """Train, evaluate and save one model; returns its manifest.

    `recipe` supplies the schedule and network configs (default: the registered recipe named
    by config.recipe); the recipe search passes unregistered candidates this way.
    """
    recipe = recipe or get_recipe(config.recipe)
    torch.manual_seed(config.seed)
    schedule = make_schedule(recipe.schedule)
    conditional = config.objective == "conditional"
    if conditional and dataset not in LABELLED:
        raise ValueError(f"dataset {dataset!r} has no classes; labelled: {sorted(LABELLED)}")
    points, labels = get_labelled(dataset) if conditional else (get_dataset(dataset), None)
    data = torch.from_numpy(points)
    labels = None if labels is None else torch.from_numpy(labels)
    network = Denoiser(network_config(recipe, config.objective, dataset))
    null = network.config.num_classes
    ema = EMA(network, config)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s))
    g = torch.Generator().manual_seed(config.seed)
    rows: list[tuple] = []
    bar = tqdm(total=config.steps, desc=f"train {dataset}/{config.objective}", disable=not progress)
    start = time.perf_counter()
    for step, idx in zip(
        range(config.steps), batches(len(data), config.batch_size, g), strict=False
    ):
        x0 = data[idx]
        eps = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, schedule.num_timesteps, (len(x0),), generator=g)
        x_t = add_noise(schedule, x0, eps, t)
        batch_labels = None
        if labels is not None:
            batch_labels = drop_labels(labels[idx], null, config.label_dropout, g)
        eps_hat, log_p = predict(network, schedule, config.objective, x_t, t, batch_labels)
        loss, mse, log_p = objective_loss(config, schedule, eps_hat, log_p, eps, t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        ema.update(network, step)
        rows.append((step, loss.item(), mse.item(), log_p.item(), lr, grad_norm.item()))
        if step % 100 == 0 or step == config.steps - 1:
            runaway = " RUNAWAY log p_hat" if abs(rows[-1][3]) > RUNAWAY_LOG_P else ""
            bar.set_postfix_str(
                f"loss={rows[-1][1]:.4g} mse={rows[-1][2]:.4f} log_p={rows[-1][3]:.3g}{runaway}"
            )
        bar.update(1)
    bar.close()
    train_seconds = time.perf_counter() - start

    final_eval_loss, eval_log_p = eval_loss(network, schedule, data, config, labels)
    name = name or ModelKind(dataset, config.objective, config.recipe).name
    partial = {"dataset": dataset, "training": asdict(config), "recipe": config.recipe}
    ready = make_ready(name, ema.model, schedule, partial)
    kl = evaluate(ready, SampleSpec(n=config.kl_samples, seed=config.seed))
    tail = rows[-100:]
    extra = {
        "recipe": config.recipe,
        "train_seconds": round(train_seconds, 2),
        "final_loss": float(np.mean([r[1] for r in tail])),  # mean of the last 100 steps
        "final_mse": float(np.mean([r[2] for r in tail])),
        "eval_loss": final_eval_loss,
        "mean_log_p_hat": eval_log_p,
        "max_abs_log_p_hat_train": float(max(abs(r[3]) for r in rows)),
        "log_p_hat_runaway": bool(max(abs(r[3]) for r in rows) > RUNAWAY_LOG_P),
        "kl_bits": kl.kl_bits,  # baseline (unguided) samples from the EMA weights
        "kl_samples": kl.n,
        "kl_seed": kl.seed,
        "kl_nonfinite": kl.nonfinite,
        "sampling_seconds": round(kl.sampling_seconds, 4),
        "versions": versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loss_log": "loss.csv",
    }
    files = {"loss.csv": loss_csv(rows)}
    if conditional:
        classifier, info = train_classifier(
            dataset,
            ClassifierConfig(num_classes=null),
            ClassifierTraining(steps=config.classifier_steps, seed=config.seed),
        )
        files[CLASSIFIER_FILE] = classifier_bytes(classifier)
        extra["classifier"] = {"file": CLASSIFIER_FILE, **info}
    store = CheckpointStore(out)
    return store.save(
        name,
        ema.model,
        recipe.schedule,
        dataset,
        training=asdict(config),
        extra=extra,
        files=files,
    )
