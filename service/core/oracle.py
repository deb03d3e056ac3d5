"""Oracle models: a dataset's exact denoiser, eps*(x, t) = -sigma_t grad log p_t(x), with no
weights (docs/DESIGN.md#10-ground-truth).

An oracle is served like any model: its store folder holds a manifest (objective `oracle`, the
schedule it runs on, what its density is) sealed like a learned model's. In place of a weights
file's sha256 it carries the sha256 of the density's parameters as this code builds them
(`fingerprint`), so a manifest edited, or code that changed the density, is refused at load.
On the labelled datasets the oracle is class-conditional: label c is p_t(x | c), the null label
the marginal, so cfg and the other class guiders run on it with exact scores; its classifier is
the exact posterior p(c | x).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from service.core.exact.density import ExactDensity
from service.core.manifest import ORACLE, ModelKind
from service.core.model import ReadyModel
from service.core.schedule import BETA_SCHEDULES, Schedule, ScheduleConfig

# an oracle per shipped schedule: the paper's linear one, and the improved recipes' log-SNR one
ORACLE_SCHEDULES = {
    "paper": ScheduleConfig(),
    "improved": ScheduleConfig(kind="logsnr", sigma_min=0.002, alpha_bar_end=0.005),
}


def fingerprint(density: ExactDensity) -> str:
    """sha256 over the density's description, class priors and every family's parameters."""
    h = hashlib.sha256(density.description.encode())
    h.update(density.log_prior.cpu().numpy().tobytes())
    for families in density.classes:
        for f in families:
            h.update(type(f).__name__.encode())
            for value in vars(f).values():
                if isinstance(value, torch.Tensor):
                    h.update(value.cpu().numpy().tobytes())
                elif isinstance(value, (int, float)):
                    h.update(repr(value).encode())
    return h.hexdigest()


def describe_density(density: ExactDensity) -> dict[str, Any]:
    families = [type(f).__name__ for fams in density.classes for f in fams]
    return {
        "analytic": True,
        "density": density.description,
        "families": families,
        "num_classes": density.num_classes,
        "components": sum(
            len(f.log_weights)
            for fams in density.classes
            for f in fams
            if hasattr(f, "log_weights")
        ),
    }


def levels(config: ScheduleConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, s) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) for t = 0..T-1, float64."""
    alpha_bar = torch.cumprod(1 - BETA_SCHEDULES[config.kind](config), dim=0)
    return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()


class ExactPosterior(nn.Module):
    """The exact class posterior at the data, p(c | x), as the classifier of a labelled oracle:
    its logits are log p(c | x)."""

    def __init__(self, density: ExactDensity):
        super().__init__()
        self.density = density
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # carries the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.density.log_posterior(x, 1.0, 0.0).to(x.dtype)

    def to(self, device):  # noqa: D102 - the density's tensors move with it
        self.density = self.density.to(device)
        return super().to(device)


def make_oracle_ready(
    name: str,
    density: ExactDensity,
    schedule: Schedule,
    manifest: dict[str, Any],
    device: torch.device | str = "cpu",
) -> ReadyModel:
    device = torch.device(device)
    a, s = levels(schedule.config)
    density = density.to(device)
    return ReadyModel(
        name,
        None,
        schedule.to(device),
        manifest,
        device,
        torch.zeros(0, device=device),
        None,
        None,
        analytic=density,
        levels=(a.to(device), s.to(device)),
        classifier=ExactPosterior(density).to(device) if density.num_classes else None,
    )


def _labels(model: ReadyModel, rows: int, labels, label_uniform, device):
    if not model.num_classes:
        return None
    if labels is not None:
        return labels
    label = model.null_label if label_uniform is None else label_uniform
    return torch.full((rows,), label, dtype=torch.long, device=device)


def oracle_eps(
    model: ReadyModel,
    x: torch.Tensor,
    t: torch.Tensor,
    with_gradient: bool,
    labels: torch.Tensor | None = None,
    label_uniform: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The exact eps (B, 2) at integer timesteps t, in x's dtype, and (asked) grad log p_t."""
    a, s = model.levels
    labels = _labels(model, len(x), labels, label_uniform, x.device)
    score = model.analytic.score(x, a[t], s[t], labels)
    eps = (-s[t, None] * score).to(x.dtype)
    return eps, (score.to(x.dtype) if with_gradient else None)


def oracle_eps_and_divergence(
    model: ReadyModel, x: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """eps and div_x eps = -s_t laplacian log p_t, by autograd through the exact score."""
    a, s = model.levels
    labels = _labels(model, len(x), None, None, x.device)
    with torch.enable_grad():
        y = x.detach().to(torch.float64).requires_grad_(True)
        eps = -s[t, None] * model.analytic.score(y, a[t], s[t], labels)
        div = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for i in range(2):
            (grad,) = torch.autograd.grad(eps[:, i].sum(), y, retain_graph=i == 0)
            div = div + grad[:, i]
    return eps.detach().to(x.dtype), div.detach().to(x.dtype)


def oracle_denoise(model: ReadyModel, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """eps at a continuous timestep t (the likelihood's ODE): the noise level interpolated in
    log sigma between integer steps as core/likelihood.py's `timestep_at` inverts it."""
    a_tab, s_tab = model.levels
    log_sigma = (s_tab / a_tab).log()
    t = t.to(torch.float64).to(x.device).clamp(0, len(log_sigma) - 1)
    lo = t.floor().long().clamp(max=len(log_sigma) - 2)
    frac = t - lo
    sigma = (log_sigma[lo] * (1 - frac) + log_sigma[lo + 1] * frac).exp()
    a = 1 / (1 + sigma * sigma).sqrt()
    s = sigma * a
    labels = _labels(model, len(x), None, None, x.device)
    return -s[:, None] * model.analytic.score(x.to(torch.float64), a, s, labels)


def oracle_manifest(dataset: str, recipe: str, density: ExactDensity) -> dict[str, Any]:
    """The manifest of `dataset`'s oracle on `recipe`'s schedule (unsealed: the store seals it)."""
    schedule = ORACLE_SCHEDULES[recipe]
    return {
        "name": ModelKind(dataset, ORACLE, recipe).name,
        "dataset": dataset,
        "model": describe_density(density),
        "schedule": asdict(schedule),
        "training": {"objective": ORACLE, "steps": 0},
        "recipe": recipe,
        "sha256": fingerprint(density),
    }
