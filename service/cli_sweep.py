"""`dgs sweep GRID_FILE`: run a sweep on a server and write its table."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any


def _write_csv(rows: list[dict[str, Any]], out: Any) -> None:
    import json

    if not rows:
        return
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
        )


def _sweep(args: argparse.Namespace) -> int:
    from service.client import Client, ServiceError
    from service.sweep_client import read_grid_file, run

    spec = read_grid_file(args.grid_file)
    if args.seeds is not None:
        spec["seeds"] = args.seeds
    try:
        with Client(args.url) as client:
            result = run(client, spec, progress=not args.quiet)
    except ServiceError as e:
        print(f"dgs sweep: error: {e}", file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, "w", newline="") as f:
            _write_csv(result.rows, f)
    done, failed = result.status.get("done", 0), result.status.get("failed", 0)
    print(
        f"sweep {result.id}: {result.status['state']}, {done} cells done, {failed} failed",
        file=sys.stderr,
    )
    _write_csv(result.summary, sys.stdout)
    return 0 if result.status["state"] == "done" else 1


def add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid of /evaluate cells on a server as one sweep; print its summary (CSV)",
    )
    p.add_argument(
        "grid_file",
        type=Path,
        help="YAML or JSON: {grid: {field: value or [values]}, seeds?, metrics?, name?}",
    )
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    p.add_argument("--seeds", type=int, default=None, help="a count of seeds (overrides the file)")
    p.add_argument("--out", default=None, help="also write one row a cell to this CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)
