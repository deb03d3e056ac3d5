"""Sweeps from Python: submit a grid, follow its progress, and get its table back.

    from service.client import Client
    with Client("http://127.0.0.1:8000") as c:
        result = c.sweep({"dataset": "moons", "variant": ["baseline", "smoothed"],
                          "scale": [0.5, 1, 2], "n": 5000}, seeds=3)
        print(result.summary)        # one dict a config: each metric's mean and 95% interval
        result.frame                 # the rows as a pandas DataFrame, where pandas is installed

Needs only httpx (and tqdm for the progress bar), like the client.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.client import Client


@dataclass
class SweepResult:
    id: str
    status: dict[str, Any]  # GET /sweeps/{id} at the end: state, counts, the spec
    rows: list[dict[str, Any]]  # one a cell (its full request in "request")
    summary: list[dict[str, Any]]  # one a config

    @property
    def frame(self) -> Any:
        """The rows as a pandas DataFrame, or None where pandas is not installed."""
        return _frame(self.rows)

    @property
    def summary_frame(self) -> Any:
        return _frame(self.summary)


def _frame(rows: list[dict[str, Any]]) -> Any:
    try:
        import pandas
    except ImportError:
        return None
    return pandas.DataFrame(rows)


def read_grid_file(path: str | Path) -> dict[str, Any]:
    """A sweep request from a YAML or JSON file: {grid, seeds?, metrics?, name?}, or a bare grid."""
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError as e:
            raise RuntimeError(
                "reading YAML needs pyyaml: pip install 'density-guidance-service[client]', "
                "or give the grid as JSON"
            ) from e
        spec = yaml.safe_load(text)
    else:
        spec = json.loads(text)
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a sweep file holds a mapping with a `grid`")
    return spec if "grid" in spec else {"grid": spec}


def submit(client: Client, spec: dict[str, Any]) -> dict[str, Any]:
    return client._post("/sweeps", spec).json()


def follow(client: Client, sweep_id: str, total: int, progress: bool) -> dict[str, Any]:
    """Read the sweep's events until it ends; a dropped stream is reopened. -> the last status."""
    from service.client import parse_sse

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="cell", desc=f"sweep {sweep_id[:8]}")
    try:
        while True:
            with client.http.stream("GET", f"/sweeps/{sweep_id}/events", timeout=None) as r:
                if r.status_code != 200:
                    r.read()
                    from service.client import _error

                    raise _error(r)
                for event, data in parse_sse(r.iter_lines()):
                    if bar is not None and "done" in data:
                        bar.update(data["done"] + data["failed"] - bar.n)
                    if event == "end":
                        return data
            time.sleep(1.0)
    finally:
        if bar is not None:
            bar.close()


def sweep(
    client: Client,
    grid: dict[str, Any],
    *,
    seeds: int | list[int] = 1,
    metrics: list[str] | None = None,
    name: str | None = None,
    progress: bool = False,
) -> SweepResult:
    spec: dict[str, Any] = {"grid": grid, "seeds": seeds}
    if metrics is not None:
        spec["metrics"] = metrics
    if name is not None:
        spec["name"] = name
    return run(client, spec, progress)


def run(client: Client, spec: dict[str, Any], progress: bool = False) -> SweepResult:
    created = submit(client, spec)
    status = follow(client, created["id"], created["cells"], progress)
    results = client._get(f"/sweeps/{created['id']}/results")
    return SweepResult(created["id"], status, results["rows"], results["summary"])
