"""What a checkpoint's manifest says, typed: the model's kind, the naming rule, the configs.

The one place that reads a manifest's fields by name, so the rules about them (the recipe a
manifest without one was made with, the objective's home inside `training`, how a model's name
is made from its kind and parsed back) live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.core.data import DATASETS
from service.core.network import DenoiserConfig
from service.core.schedule import BETA_SCHEDULES, ScheduleConfig

OBJECTIVES = ("plain", "density", "energy", "conditional", "oracle")
# an analytic model: the dataset's exact denoiser, no weights (core/oracle.py)
ORACLE = "oracle"
# a smaller, shorter-trained conditional model that guides its dataset's main one (autoguidance)
GUIDE_RECIPE = "guide"
PAPER_RECIPE = "paper"  # manifests written before recipes existed were all made with it


class ManifestError(ValueError):
    """A manifest field that is missing, of the wrong type, or names something unknown."""


@dataclass(frozen=True)
class ModelKind:
    dataset: str
    objective: str
    recipe: str = PAPER_RECIPE

    @property
    def name(self) -> str:
        """The naming rule: `moons-plain` for the paper's recipe, else `moons-plain-improved`."""
        base = f"{self.dataset}-{self.objective}"
        return base if self.recipe == PAPER_RECIPE else f"{base}-{self.recipe}"

    @property
    def preference(self) -> int:
        """Which model is its dataset's default for its objective: the improved recipe wins."""
        if self.recipe == GUIDE_RECIPE:  # a guide is never its dataset's default
            return -1
        return 0 if self.recipe == PAPER_RECIPE else 1

    @classmethod
    def from_name(cls, name: str) -> ModelKind | None:
        """The kind a name made by the naming rule stands for, else None."""
        parts = name.split("-", 2)
        if len(parts) < 2 or parts[0] not in DATASETS or parts[1] not in OBJECTIVES:
            return None
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else PAPER_RECIPE)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> ModelKind:
        training = manifest.get("training")
        objective = training.get("objective") if isinstance(training, dict) else None
        if objective not in OBJECTIVES:
            raise ManifestError(f"unknown objective {objective!r}, not in {OBJECTIVES}")
        dataset = manifest.get("dataset")
        if dataset not in DATASETS:
            raise ManifestError(f"unknown dataset {dataset!r}")
        recipe = manifest.get("recipe", PAPER_RECIPE)
        if not isinstance(recipe, str):
            raise ManifestError(f"recipe must be a string, got {recipe!r}")
        return cls(dataset, objective, recipe)


@dataclass(frozen=True)
class Manifest:
    """A checked manifest. `raw` is the JSON object as stored (what /models shows)."""

    name: str
    id: str
    sha256: str
    kind: ModelKind
    network: DenoiserConfig | None  # None for an oracle: its `model` describes its density
    schedule: ScheduleConfig
    raw: dict[str, Any]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Manifest:
        """Type and check every field a loader relies on; raises ManifestError naming it."""
        kind = ModelKind.from_manifest(raw)
        network = (
            None if kind.objective == ORACLE else _config(DenoiserConfig, raw.get("model"), "model")
        )
        schedule = _config(ScheduleConfig, raw.get("schedule"), "schedule")
        if schedule.kind not in BETA_SCHEDULES:
            raise ManifestError(f"unknown schedule kind {schedule.kind!r}")
        return cls(raw["name"], raw["id"], raw["sha256"], kind, network, schedule, raw)


def _config(cls: type, values: Any, what: str) -> Any:
    names = set(cls.__dataclass_fields__)
    if not isinstance(values, dict) or set(values) - names:
        raise ManifestError(f"{what} config has unknown keys or is not an object")
    try:
        return cls(**values)
    except TypeError as e:
        raise ManifestError(f"{what} config: {e}") from e
