"""A sweep's table: one row per cell, and per config the mean of each metric over its seeds
with a 95% Student-t interval."""

from __future__ import annotations

import math
from typing import Any

from scipy import stats


def metric(result: dict[str, Any] | None, name: str) -> float | None:
    """A metric of an /evaluate result by dotted path (`exact.energy_distance`); None when it
    is absent or not a finite number."""
    value: Any = result
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def mean_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean; with one value the interval is
    unknown (NaN)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def summary(
    rows: list[dict[str, Any]], columns: list[str], metrics: list[str]
) -> list[dict[str, Any]]:
    """Per config (rows sharing `config`): its grid values, seeds done and failed, and for each
    metric `<m>` the mean over seeds with `<m>_low`/`<m>_high` (null where fewer than 2)."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["config"], []).append(row)
    out = []
    for config, group in sorted(groups.items()):
        first = group[0]["request"]
        entry: dict[str, Any] = {"config": config, **{c: first.get(c) for c in columns}}
        done = [r for r in group if r["state"] == "done"]
        entry["seeds_done"] = len(done)
        entry["seeds_failed"] = sum(r["state"] == "failed" for r in group)
        for m in metrics:
            values = [v for r in done if (v := metric(r["result"], m)) is not None]
            if values:
                mean, low, high = mean_interval(values)
                entry[m] = mean
                entry[f"{m}_low"] = None if math.isnan(low) else low
                entry[f"{m}_high"] = None if math.isnan(high) else high
            else:
                entry[m] = entry[f"{m}_low"] = entry[f"{m}_high"] = None
        out.append(entry)
    return out
