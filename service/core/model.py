"""A denoiser made ready to sample: weights on a device, its schedule, and its cached time table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from service.core.energy import gaussian_coef
from service.core.manifest import ModelKind
from service.core.network import Denoiser, InferenceWeights, inference_weights
from service.core.schedule import Schedule, full_alpha_bar, make_schedule
from service.core.spacing import DEFAULT_SPACING, TUNED, log_sigma
from service.core.tuned_spacing import TunedSpacing


@dataclass(frozen=True)
class ReadyModel:
    name: str  # store id, e.g. "moons-density"
    network: Denoiser | None  # None for an oracle (its eps is `analytic`'s exact score)
    schedule: Schedule
    manifest: dict[str, Any]
    device: torch.device
    time_table: torch.Tensor  # (T, hidden): the first layer's time share per timestep
    weights: InferenceWeights
    # Rows per forward block: on the CPU, blocks of ~1k rows keep activations in cache.
    block_rows: int | None
    # Pad every block to exactly block_rows (CUDA): cuBLAS picks its kernel, and so its
    # rounding, by shape; one fixed shape makes a row's result independent of its batch.
    pad_blocks: bool = False
    # energy models only: sigma_t / v_t per timestep (eps = -grad f + (sigma_t / v_t) x)
    energy_coef: torch.Tensor | None = None
    # class-conditional models: (num_classes + 1, hidden), the first layer's share of each
    # class; the last row is the null class (unconditional)
    class_table: torch.Tensor | None = None
    # the small classifier p(c | x) its worker trained beside it (core/classifier.py)
    classifier: Any = field(default=None, repr=False, compare=False)
    # oracles: the dataset's exact density (core/exact), and its (a, s) per timestep in float64
    analytic: Any = field(default=None, repr=False, compare=False)
    levels: tuple[torch.Tensor, torch.Tensor] | None = field(
        default=None, repr=False, compare=False
    )
    # the timesteps searched for it (core/tuned_spacing.py), or why its side file is not used
    tuned_spacing: TunedSpacing | None = field(default=None, repr=False, compare=False)
    tuned_spacing_error: str | None = field(default=None, repr=False, compare=False)
    _respaced: dict[tuple[int, str], Schedule] = field(
        default_factory=dict, repr=False, compare=False
    )
    # sampling plans by (variant, scale, steps): built once, then shared by requests
    plans: dict[tuple, Any] = field(default_factory=dict, repr=False, compare=False)

    def schedule_for(self, steps: int | None, spacing: str = DEFAULT_SPACING) -> Schedule:
        """The full schedule, or its respacing to `steps` reverse steps at the timesteps
        `spacing` picks (core/spacing.py; built once, cached)."""
        if steps is None or steps == self.schedule.num_steps:
            return self.schedule
        key = (steps, spacing)
        if key not in self._respaced:
            kept = None
            if spacing == TUNED:
                if self.tuned_spacing is None:
                    raise ValueError(f"model {self.name!r} has no tuned spacing")
                log_sig = log_sigma(full_alpha_bar(self.schedule.config))
                kept = self.tuned_spacing.kept(steps, log_sig)
            respaced = make_schedule(self.schedule.config, steps, spacing, kept)
            self._respaced[key] = respaced.to(self.device)
        return self._respaced[key]

    @property
    def id(self) -> str:
        """The model's identity: covers its weights and the configs that interpret them."""
        return self.manifest["id"]

    @property
    def sha256(self) -> str:
        """The weights file's sha256 (part of the identity, not all of it)."""
        return self.manifest["sha256"]

    @property
    def kind(self) -> ModelKind:
        return ModelKind.from_manifest(self.manifest)

    @property
    def dataset(self) -> str:
        return self.kind.dataset

    @property
    def objective(self) -> str:
        return self.kind.objective

    @property
    def recipe(self) -> str:
        return self.kind.recipe

    @property
    def density_trained(self) -> bool:
        return self.objective == "density"

    @property
    def is_energy(self) -> bool:
        return self.objective == "energy"

    @property
    def num_classes(self) -> int:
        if self.analytic is not None:
            return self.analytic.num_classes
        return self.network.config.num_classes

    @property
    def null_label(self) -> int:
        """The null class's index: what an unconditional row of a conditional model uses."""
        return self.num_classes

    @property
    def is_oracle(self) -> bool:
        return self.analytic is not None


CPU_BLOCK_ROWS = 1024
GPU_BLOCK_ROWS = 8192


def make_ready(
    name: str,
    network: Denoiser,
    schedule: Schedule,
    manifest: dict[str, Any],
    device: torch.device | str = "cpu",
    classifier: Any = None,
) -> ReadyModel:
    device = torch.device(device)
    network = network.to(device).eval().requires_grad_(False)
    schedule = schedule.to(device)
    with torch.no_grad():
        steps = torch.arange(schedule.num_timesteps, device=device)
        table = network.time_hidden(steps).contiguous()
    on_cpu = device.type == "cpu"
    energy_coef = None
    if network.config.out_dim == 1:  # an energy network: its one output is E's learned part
        _, inv_v = gaussian_coef(schedule)
        energy_coef = (schedule.sqrt_one_minus_alpha_bar.float() * inv_v).contiguous()
    return ReadyModel(
        name,
        network,
        schedule,
        manifest,
        device,
        table,
        inference_weights(network),
        CPU_BLOCK_ROWS if on_cpu else GPU_BLOCK_ROWS,
        pad_blocks=not on_cpu,
        energy_coef=energy_coef,
        class_table=None if network.label is None else network.label.weight.contiguous(),
        classifier=None if classifier is None else classifier.to(device).eval(),
    )
