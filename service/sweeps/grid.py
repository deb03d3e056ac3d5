"""A sweep's grid: each field a value or a list of values; the cells are every combination,
times the seeds. Lists are expanded in the order given, the last field fastest, seeds
innermost, so a cell's index says where it came from."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cell:
    request: dict[str, Any]
    config: int  # the index of its combination of the grid's values (all seeds share it)
    choice: dict[str, int]  # for each listed field, the index of the value this cell took


def as_lists(grid: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: v if isinstance(v, list) else [v] for k, v in grid.items()}


def count(grid: dict[str, Any], seeds: list[int]) -> int:
    """The cells a grid makes, computed before anything is expanded."""
    return math.prod(len(v) for v in as_lists(grid).values()) * len(seeds)


def listed(grid: dict[str, Any]) -> list[str]:
    """The fields given as lists: the columns that tell one config from another."""
    return [k for k, v in grid.items() if isinstance(v, list)]


def expand(grid: dict[str, Any], seeds: list[int]) -> list[Cell]:
    lists = as_lists(grid)
    names = list(lists)
    out = []
    combos = itertools.product(*(range(len(lists[k])) for k in names))
    for config, picks in enumerate(combos):
        base = {k: lists[k][i] for k, i in zip(names, picks, strict=True)}
        choice = {k: i for k, i in zip(names, picks, strict=True) if isinstance(grid[k], list)}
        out.extend(Cell({**base, "seed": seed}, config, choice) for seed in seeds)
    return out
