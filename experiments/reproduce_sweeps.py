"""`dgs reproduce --server URL`: Table 1 and the guidance-scale sweep as sweeps on a running
server, so their cells are batched together and their results kept in its database.

The same cells as the offline `dgs reproduce` (the paper recipe's models by name, the same n
and seed): /evaluate samples bit for bit as the offline sampler does, so the KL column agrees.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from experiments.paper import GRID
from experiments.reproduce import SWEEP_SCALES, SWEEP_VARIANTS
from service.client import Client
from service.sweep_client import follow

METRICS = [
    "kl_bits",
    "nonfinite_fraction",
    "seconds_per_sample",
    "exact.reverse_kl_bits",
    "exact.support_fraction",
]
COLUMNS = ["sweep", "cell", "dataset", "model", "variant", "scale", "n", "seed", "state", "error"]


def sweep_requests(datasets: list[str], n: int, sweep_n: int, seed: int) -> list[dict[str, Any]]:
    """Per dataset: Table 1's plain and density rows, and the guided variants over scales
    (model names differ by dataset, so a dataset is a sweep, not a list in one)."""
    density_variants = [v for objective, v in GRID if objective == "density"]
    out = []
    for d in datasets:
        common = {"dataset": d, "seeds": [seed], "metrics": METRICS}
        out += [
            {
                "name": f"reproduce table1 {d} plain",
                "grid": {"dataset": d, "model": f"{d}-plain", "variant": "baseline", "n": n},
            },
            {
                "name": f"reproduce table1 {d} density",
                "grid": {
                    "dataset": d,
                    "model": f"{d}-density",
                    "variant": density_variants,
                    "n": n,
                },
            },
            {
                "name": f"reproduce scale sweep {d}",
                "grid": {
                    "dataset": d,
                    "model": f"{d}-density",
                    "variant": list(SWEEP_VARIANTS),
                    "scale": list(SWEEP_SCALES),
                    "n": sweep_n,
                },
            },
        ]
        for request in out[-3:]:
            request.update({k: v for k, v in common.items() if k != "dataset"})
    return out


def reproduce_on_server(
    url: str, out: Path, datasets: list[str], n: int, sweep_n: int, seed: int, progress: bool
) -> list[dict[str, Any]]:
    """Submit every sweep first (so the server batches across them), then follow each; write
    `sweeps.csv`, one row a cell, and return the rows."""
    rows = []
    with Client(url, retry_budget_s=600) as client:
        created = [
            (r, client._post("/sweeps", r).json())
            for r in sweep_requests(datasets, n, sweep_n, seed)
        ]
        for request, sweep in created:
            follow(client, sweep["id"], sweep["cells"], progress)
            results = client._get(f"/sweeps/{sweep['id']}/results")
            for row in results["rows"]:
                cell = row["request"]
                rows.append(
                    {
                        "sweep": request["name"],
                        "cell": row["cell"],
                        **{
                            k: cell.get(k)
                            for k in ("dataset", "model", "variant", "scale", "n", "seed")
                        },
                        "state": row["state"],
                        "error": row["error"],
                        **{m: row[m] for m in METRICS},
                    }
                )
    out.mkdir(parents=True, exist_ok=True)
    with (out / "sweeps.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS + METRICS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows
