"""The checkpoint store: a folder per model, `<store>/<name>/{weights.safetensors, manifest.json}`.

Checkpoints describe themselves: the manifest carries the network and schedule configs and the
sha256 of the weights file. A model's identity (`id`, in the manifest) is the sha256 of the
manifest's every other field, the weights' sha256 among them, so it covers the weights and the
configs that interpret them: editing any of either without re-sealing is refused, and any change
gives a new id. Every file is written to a temporary name and renamed into place, and `load`
checks the id, the weights' hash and the tensor names and shapes before it returns a network,
so a torn, corrupt, tampered or mismatched checkpoint raises `CheckpointError` and is never used.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from service.core.atomic import canonical_sha256, sha256_bytes, write_atomic
from service.core.classifier import Classifier, ClassifierConfig
from service.core.exact.datasets import exact_density
from service.core.manifest import ORACLE, Manifest, ManifestError
from service.core.model import ReadyModel, make_ready
from service.core.network import Denoiser
from service.core.oracle import fingerprint, make_oracle_ready, oracle_manifest
from service.core.schedule import ScheduleConfig, make_schedule
from service.core.tuned_spacing import TunedSpacing, read_beside, write_beside

WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: the manifest carries its `id`
REQUIRED_KEYS = (
    "format_version",
    "name",
    "dataset",
    "model",
    "schedule",
    "training",
    "sha256",
    "id",
)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class Checkpoint:
    name: str
    network: Denoiser | None  # on the CPU, eval mode; None for an oracle
    manifest: Manifest
    path: Path
    classifier: Classifier | None = None  # a conditional model's p(c | x), verified as its weights
    analytic: Any = None  # an oracle's exact density (core/exact); its network is None

    @property
    def schedule(self) -> ScheduleConfig:
        return self.manifest.schedule


def manifest_id(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of every field but `id` (sorted keys, no whitespace)."""
    return canonical_sha256({k: v for k, v in manifest.items() if k != "id"})


def sealed(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its `id` made anew: what saving a changed model does."""
    return {**manifest, "id": manifest_id(manifest)}


class CheckpointStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def names(self) -> list[str]:
        """Every folder that holds a manifest, sorted; whether it loads is `load`'s business."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{MANIFEST}"))

    def path(self, name: str) -> Path:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"invalid model name {name!r}: use lowercase letters, digits, - _ .")
        return self.root / name

    def read_manifest(self, name: str) -> dict[str, Any]:
        path = self.path(name) / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise CheckpointError(f"{path}: missing") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: unreadable manifest ({e})") from e
        missing = (
            [k for k in REQUIRED_KEYS if k not in manifest]
            if isinstance(manifest, dict)
            else REQUIRED_KEYS
        )
        if missing:
            raise CheckpointError(f"{path}: manifest lacks {list(missing)}")
        if manifest["format_version"] != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: format_version {manifest['format_version']}, expected {FORMAT_VERSION}"
            )
        if manifest["id"] != manifest_id(manifest):
            raise CheckpointError(
                f"{path}: the manifest does not match its id {str(manifest['id'])[:12]}... "
                "(edited, tampered or half-written; a changed model must be saved anew)"
            )
        if manifest["name"] != name:
            raise CheckpointError(f"{path}: manifest names {manifest['name']!r}, not {name!r}")
        return manifest

    def load(self, name: str) -> Checkpoint:
        """Verify and load one checkpoint; raises CheckpointError naming the file on any fault."""
        folder = self.path(name)
        raw = self.read_manifest(name)
        try:
            manifest = Manifest.parse(raw)
        except ManifestError as e:
            raise CheckpointError(f"{folder / MANIFEST}: {e}") from e
        if manifest.kind.objective == ORACLE:
            return self._load_oracle(name, folder, manifest)
        wpath = folder / WEIGHTS
        try:
            data = wpath.read_bytes()
        except OSError as e:
            raise CheckpointError(f"{wpath}: cannot read ({e})") from e
        digest = sha256_bytes(data)
        if digest != manifest.sha256:
            raise CheckpointError(
                f"{wpath}: sha256 {digest[:12]}... does not match the manifest's "
                f"{str(manifest.sha256)[:12]}... (corrupt, tampered or half-written)"
            )
        try:
            tensors = load_safetensors(data)
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{wpath}: not a valid safetensors file ({e})") from e
        network = Denoiser(manifest.network)
        expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in tensors.items()}
        if expected != found:
            diff = sorted(set(expected.items()) ^ set(found.items()))[:4]
            raise CheckpointError(f"{wpath}: tensors do not match the model config: {diff}")
        if not all(torch.isfinite(v).all() for v in tensors.values()):
            raise CheckpointError(f"{wpath}: weights hold non-finite values")
        network.load_state_dict(tensors, strict=True)
        classifier = self._load_classifier(folder, raw)
        return Checkpoint(name, network.eval(), manifest, folder, classifier)

    def _load_oracle(self, name: str, folder: Path, manifest: Manifest) -> Checkpoint:
        """An oracle has no weights: its manifest's sha256 must be the fingerprint of the
        density this code builds for its dataset, and its schedule a shipped one."""
        density = exact_density(manifest.kind.dataset)
        digest = fingerprint(density)
        if digest != manifest.sha256:
            raise CheckpointError(
                f"{folder / MANIFEST}: the density's fingerprint {digest[:12]}... does not match "
                f"the manifest's {str(manifest.sha256)[:12]}... (tampered, or the code's density "
                "changed: write the oracles anew with `dgs oracles`)"
            )
        return Checkpoint(name, None, manifest, folder, analytic=density)

    def save_oracle(self, dataset: str, recipe: str) -> dict[str, Any]:
        """Write `dataset`'s oracle on `recipe`'s schedule: a sealed manifest, no weights."""
        raw = oracle_manifest(dataset, recipe, exact_density(dataset))
        manifest = sealed({"format_version": FORMAT_VERSION, **raw})
        folder = self.path(manifest["name"])
        write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        return manifest

    def _load_classifier(self, folder: Path, raw: dict[str, Any]) -> Classifier | None:
        """The side file a conditional model's manifest names, checked against its sha256."""
        entry = raw.get("classifier")
        if entry is None:
            return None
        try:
            path = folder / entry["file"]
            config = ClassifierConfig(**entry["config"])
            expected = entry["sha256"]
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{folder / MANIFEST}: bad classifier entry ({e})") from e
        if Path(entry["file"]).name != entry["file"]:
            raise CheckpointError(f"{folder / MANIFEST}: classifier file must be in the folder")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e})") from e
        if sha256_bytes(data) != expected:
            raise CheckpointError(f"{path}: sha256 does not match the manifest's (tampered?)")
        net = Classifier(config)
        try:
            net.load_state_dict(load_safetensors(data), strict=True)
        except Exception as e:
            raise CheckpointError(f"{path}: does not match its config ({e})") from e
        return net.eval().requires_grad_(False)

    def load_ready(self, name: str, device: torch.device | str = "cpu") -> ReadyModel:
        """`load`, then move to `device` with the schedule and time table ready to sample."""
        ckpt = self.load(name)
        schedule = make_schedule(ckpt.schedule)
        if ckpt.analytic is not None:
            ready = make_oracle_ready(name, ckpt.analytic, schedule, ckpt.manifest.raw, device)
        else:
            raw = ckpt.manifest.raw
            ready = make_ready(name, ckpt.network, schedule, raw, device, ckpt.classifier)
        # a side file that cannot be used leaves the model served without it, saying why
        tuned, error = read_beside(ckpt.path, ready.id, schedule.num_timesteps)
        return replace(ready, tuned_spacing=tuned, tuned_spacing_error=error)

    def save_tuned_spacing(self, name: str, tuned: TunedSpacing) -> Path:
        """Write a tuned spacing beside the model it was tuned on (its id must be the stored
        model's)."""
        manifest = self.read_manifest(name)
        if tuned.model_id != manifest["id"]:
            raise CheckpointError(f"{self.path(name)}: tuned on another model, not saved")
        return write_beside(self.path(name), tuned)

    def save(
        self,
        name: str,
        network: Denoiser,
        schedule: ScheduleConfig,
        dataset: str,
        training: dict[str, Any],
        extra: dict[str, Any] | None = None,
        files: dict[str, bytes] | None = None,
    ) -> dict[str, Any]:
        """Write weights, side files, then the manifest (last: it makes the checkpoint visible).
        A side file named by an `extra` entry's "file" gets that entry's sha256."""
        folder = self.path(name)
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        data = save_safetensors(state, metadata={"name": name, "dataset": dataset})
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "dataset": dataset,
            "model": asdict(network.config),
            "schedule": asdict(schedule),
            "training": training,
            "sha256": sha256_bytes(data),
            "weights_bytes": len(data),
            **(extra or {}),
        }
        for key, entry in list(manifest.items()):
            if isinstance(entry, dict) and entry.get("file") in (files or {}):
                manifest[key] = {**entry, "sha256": sha256_bytes(files[entry["file"]])}
        manifest = sealed(manifest)
        write_atomic(folder / WEIGHTS, data)
        for fname, content in (files or {}).items():
            write_atomic(folder / fname, content)
        write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        return manifest
