"""Interactive latency while a sweep runs: the priority classes' promise, checked for sweeps.

One server on the shipped store. The same interactive requests (POST /sample, n = 16..256,
the default 100-step DDPM, one after another with a pause between) are timed on the idle server
and again while a sweep of 24 cells (n = 10,000, 100 DDPM steps, guided) runs beside them.
Target, the priorities' own: interactive p99 <= 2x alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import httpx
import numpy as np

from experiments.serving import running_server

SIZES = (16, 32, 64, 128, 256)
REQUESTS = 40
PAUSE_S = 0.2
TARGET = 2.0
GRID = {
    "dataset": ["circle", "dino", "line", "moons"],
    "variant": ["fixed", "adaptive", "smoothed"],
    "scale": [0.01, 0.1],
    "n": 10_000,
}


def _latencies(client: httpx.Client, until=None) -> list[float]:
    out = []
    for i in range(REQUESTS):
        body = {"dataset": GRID["dataset"][i % 4], "n": SIZES[i % len(SIZES)], "seed": i}
        t0 = time.perf_counter()
        r = client.post("/sample", json=body, headers={"accept": "application/x-npy"})
        r.raise_for_status()
        out.append(time.perf_counter() - t0)
        if until is not None and not until():
            break
        time.sleep(PAUSE_S)
    return out


def _stats(values: list[float]) -> dict[str, float]:
    a = np.array(values)
    return {"n": len(a), "p50": float(np.median(a)), "p99": float(np.quantile(a, 0.99))}


def run(store: Path) -> dict:
    with running_server(store) as base, httpx.Client(base_url=base, timeout=600) as client:
        _latencies(client)  # warm every dataset's plan
        alone = _stats(_latencies(client))
        created = client.post("/sweeps", json={"grid": GRID, "metrics": ["kl_bits"]}).json()

        def running() -> bool:
            status = client.get(f"/sweeps/{created['id']}", params={"rows": "false"}).json()
            return status["state"] == "running"

        time.sleep(2.0)  # the runner has claimed its first cells
        beside = _stats(_latencies(client, until=running))
        while running():
            time.sleep(1.0)
        status = client.get(f"/sweeps/{created['id']}", params={"rows": "false"}).json()
    ratio = beside["p99"] / alone["p99"]
    return {
        "alone": alone,
        "beside_sweep": beside,
        "sweep": {k: status[k] for k in ("cells", "done", "failed", "elapsed_s")},
        "p99_ratio": ratio,
        "target": TARGET,
        "met": ratio <= TARGET,
    }


def render(r: dict) -> list[str]:
    a, b = r["alone"], r["beside_sweep"]
    return [
        "",
        "## Interactive requests while a sweep runs",
        "",
        f"{a['n']} interactive /sample requests (n = 16..256, 100 DDPM steps, one at a time) "
        f"on the idle server, then {b['n']} beside a sweep of {r['sweep']['cells']} cells "
        f"(n = 10,000, guided; it took {r['sweep']['elapsed_s']:.0f} s).",
        "",
        "| | p50 s | p99 s |",
        "|---|---|---|",
        f"| alone | {a['p50']:.3f} | {a['p99']:.3f} |",
        f"| beside the sweep | {b['p50']:.3f} | {b['p99']:.3f} |",
        "",
        f"- Target interactive p99 <= {r['target']:g}x alone while a sweep runs: "
        f"{r['p99_ratio']:.2f}x - {'met' if r['met'] else '**missed**'}.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("model_store"))
    parser.add_argument("--out", type=Path, default=Path(".bench/sweep_latency.json"))
    args = parser.parse_args()
    result = run(args.store)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
