"""Tuned spacings: timesteps searched for one model, stored beside it (docs/DESIGN.md#4-samplers).

On these 2D datasets the timesteps a few-step run keeps matter more than the solver: a search
over them (service/worker/spacing_search.py) takes DPM-Solver++(2M) SDE at 10 evaluations from
0.45 to 0.11 bits on circle. What it finds depends on the model's score errors and the data's
scales, so it is the model's, not a formula: `<store>/<name>/spacing.json` holds, per step
count S, the kept timesteps, with the sampler they were tuned for, how they were found, the
id of the model they belong to and a seal (the sha256 of the rest, as a manifest's id).

A step count without a table is interpolated from the nearest tuned one, as Align Your Steps
(Sabour et al. 2024) does: its log-sigmas over the normalised step index, linearly, then each
rounded to the trained timestep nearest in log sigma.

A side file that is torn, edited or of another model is not used: the model loads without it,
and the reason is shown in /models and in the 422 of a request for `spacing: "tuned"`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.core.atomic import canonical_sha256, write_atomic
from service.core.spacing import nearest_distinct

SPACING_FILE = "spacing.json"
FORMAT = 1


class TunedSpacingError(ValueError):
    """A spacing side file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class TunedSpacing:
    model_id: str  # the id of the model it was tuned on
    sampler: str  # and the sampler
    tables: dict[int, tuple[int, ...]]  # S -> the kept timesteps, ascending, T - 1 last
    tuning: dict[str, Any] = field(default_factory=dict)  # how: n, seed, KL before and after

    def kept(self, steps: int, log_sig: torch.Tensor) -> list[int]:
        """The timesteps a run of `steps` keeps; `log_sig` (T,): log sig of every trained t."""
        if steps in self.tables:
            return list(self.tables[steps])
        larger = [s for s in self.tables if s >= steps]
        source = min(larger) if larger else max(self.tables)
        tuned = log_sig[torch.tensor(self.tables[source])]  # ascending in t
        where = torch.linspace(0, 1, len(tuned), dtype=torch.float64)
        wanted = torch.linspace(0, 1, steps, dtype=torch.float64)
        levels = np.interp(wanted.numpy(), where.numpy(), tuned.numpy())
        return nearest_distinct(log_sig, levels.tolist())

    def as_dict(self) -> dict[str, Any]:
        body = {
            "format": FORMAT,
            "model_id": self.model_id,
            "sampler": self.sampler,
            "tables": {str(s): list(kept) for s, kept in sorted(self.tables.items())},
            "tuning": self.tuning,
        }
        return {**body, "sha256": canonical_sha256(body)}


def check_table(steps: int, kept: list[int], T: int) -> tuple[int, ...]:
    """A table's kept timesteps: S distinct integers, ascending, within [0, T-1], T-1 last."""
    if not (
        isinstance(kept, list)
        and len(kept) == steps
        and all(isinstance(t, int) and not isinstance(t, bool) for t in kept)
        and all(a < b for a, b in zip(kept, kept[1:], strict=False))
        and kept
        and kept[0] >= 0
        and kept[-1] == T - 1
    ):
        raise ValueError(
            f"{steps} steps: not {steps} ascending timesteps in [0, {T - 1}], {T - 1} last"
        )
    return tuple(kept)


def parse(raw: Any, model_id: str, T: int) -> TunedSpacing:
    """A side file's content, verified: its seal, its model, every table."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"not a format-{FORMAT} spacing file")
    body = {k: v for k, v in raw.items() if k != "sha256"}
    if raw.get("sha256") != canonical_sha256(body):
        raise ValueError("its content does not match its sha256 (edited, tampered or torn)")
    if raw.get("model_id") != model_id:
        raise ValueError(f"tuned for model {str(raw.get('model_id'))[:12]}..., not this one")
    tables = raw.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise ValueError("no tables")
    out = {}
    for key, kept in tables.items():
        if not (isinstance(key, str) and key.isdigit() and 1 <= int(key) < T):
            raise ValueError(f"step count {key!r:.20} not in [1, {T - 1}]")
        out[int(key)] = check_table(int(key), kept, T)
    return TunedSpacing(model_id, str(raw.get("sampler")), out, dict(raw.get("tuning") or {}))


def read_beside(folder: Path, model_id: str, T: int) -> tuple[TunedSpacing | None, str | None]:
    """The model folder's tuned spacing, or None and why not (None, None: it has none)."""
    path = folder / SPACING_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as e:
        return None, f"{path}: unreadable ({e})"
    try:
        return parse(json.loads(text), model_id, T), None
    except (json.JSONDecodeError, ValueError) as e:
        return None, f"{path}: {e}"


def write_beside(folder: Path, tuned: TunedSpacing) -> Path:
    path = folder / SPACING_FILE
    write_atomic(path, (json.dumps(tuned.as_dict(), indent=2) + "\n").encode())
    return path
