"""`dgs bench`'s refactor section: the sampling core of a commit and of the working tree, side
by side on this machine.

The commit (`--before`, default the one the guider interface was built on) is checked out in a
git worktree beside the repository; each variant at n = 10,000 is timed in a process running
that tree's code and in one running the working tree's, the two processes alternating for
`rounds` rounds, the first of a round alternating too (drift on a shared machine then hits
both alike), and the best round of each kept. Target: after / before <= 1.03 for baseline
and every guided variant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BEFORE = "cd35f95"  # the last commit before the guider interface
TARGET = 1.03
N = 10_000
# (model, variant, request fields): the paper's variants on the density model (its head), the
# ODE variants on the plain model, the conditional ones on the conditional model
CASES = [
    ("moons-plain-improved", "baseline", {}),
    ("moons-density", "fixed", {}),
    ("moons-density", "adaptive", {}),
    ("moons-density", "smoothed", {}),
    ("moons-density", "minimal", {}),
    ("moons-plain-improved", "prior", {"scale": 0.9, "sampler": "heun"}),
    ("moons-plain-improved", "density", {"sampler": "heun"}),
    ("moons-conditional-improved", "cfg", {"label": 0}),
    (
        "moons-conditional-improved",
        "autoguidance",
        {"label": 0, "guide": "moons-conditional-guide"},
    ),
]

# Run inside either tree: the new API (SampleSpec) or the old positional one.
WORKER = r"""
import json, sys, time
args = json.loads(sys.argv[1])
from service.core.store import CheckpointStore
store = CheckpointStore(args["store"])
try:
    from service.core.offline import sample
    from service.core.spec import SampleSpec
    def run(model, variant, kw, n, guide):
        spec = SampleSpec(variant, kw.get("scale"), n, 0, args["steps"], kw.get("sampler"),
                          label=kw.get("label"))
        return sample(model, spec, guide)
except ImportError:
    from service.core.sampling import sample
    def run(model, variant, kw, n, guide):
        return sample(model, variant, kw.get("scale"), n, 0, args["steps"], kw.get("sampler"),
                      label=kw.get("label"), guide=guide)
out = []
for name, variant, kw in args["cases"]:
    model = store.load_ready(name)
    guide = store.load_ready(kw["guide"]) if "guide" in kw else None
    run(model, variant, kw, min(512, args["n"]), guide)  # warm-up (density calibrates)
    start = time.perf_counter()
    run(model, variant, kw, args["n"], guide)
    out.append(time.perf_counter() - start)
print(json.dumps(out))
"""


def _repo() -> Path:
    return Path(__file__).resolve().parents[1]


def _worktree(ref: str, where: Path) -> Path:
    tree = where / "before"
    subprocess.run(
        ["git", "-C", str(_repo()), "worktree", "add", "--detach", "-f", str(tree), ref],
        check=True,
        capture_output=True,
    )
    return tree


def _times(tree: Path, store: Path, cases: list, n: int, steps: int | None) -> list[float]:
    args = {"store": str(store), "cases": cases, "n": n, "steps": steps}
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(args)],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def refactor_cost(
    store: Path,
    before: str = BEFORE,
    n: int = N,
    rounds: int = 2,
    steps: int | None = None,
    cases: list | None = None,
    bar=None,
) -> dict:
    """Per variant: the best seconds of `before` and of the working tree, and their ratio."""
    cases = CASES if cases is None else cases
    with tempfile.TemporaryDirectory() as tmp:
        tree = _worktree(before, Path(tmp))
        try:
            old, new = [[] for _ in cases], [[] for _ in cases]
            for r in range(rounds):
                pair = ((old, tree), (new, _repo()))
                for got, where in pair if r % 2 == 0 else pair[::-1]:  # neither always first
                    for i, s in enumerate(_times(where, store.resolve(), cases, n, steps)):
                        got[i].append(s)
                    if bar is not None:
                        bar.update(1)
        finally:
            subprocess.run(
                ["git", "-C", str(_repo()), "worktree", "remove", "--force", str(tree)],
                capture_output=True,
            )
    rows = []
    for (model, variant, _), a, b in zip(cases, old, new, strict=True):
        ratio = min(b) / min(a)
        rows.append(
            {
                "model": model,
                "variant": variant,
                "before_s": round(min(a), 6),
                "after_s": round(min(b), 6),
                "ratio": round(ratio, 4),
                "spread_before": [round(x, 4) for x in a],
                "spread_after": [round(x, 4) for x in b],
                "met": ratio <= TARGET,
            }
        )
    return {"before": before, "n": n, "rounds": rounds, "target": TARGET, "rows": rows}


def render(report: dict) -> list[str]:
    lines = [
        "## The sampling core before and after a change",
        "",
        f"Commit {report['before']} (checked out beside) against the working tree, n = "
        f"{report['n']:,}, the best of {report['rounds']} rounds, one process per tree and round, "
        "the first tree of a round alternating; density and prior run Heun, the rest DDPM.",
        "",
        "| model | variant | before s | after s | after / before | rounds before | rounds after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['before_s']:.3f} | {r['after_s']:.3f} "
            f"| {r['ratio']:.3f} | {', '.join(f'{x:.3f}' for x in r['spread_before'])} "
            f"| {', '.join(f'{x:.3f}' for x in r['spread_after'])} |"
        )
    worst = max(r["ratio"] for r in report["rows"])
    verdict = "met" if worst <= report["target"] else "**missed**"
    lines += [
        "",
        f"- Target after / before <= {report['target']:.2f}: worst {worst:.3f} - {verdict}.",
        "",
    ]
    return lines
