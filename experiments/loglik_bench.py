"""The likelihood solve with far points: does one hard point stall the rest?

On the shipped moons-plain-improved, at the service's tolerance (rtol = atol = 1e-5) and cap
(LOGLIK_MAX_EVALUATIONS), one torch thread as the service's solver thread:
  - 2,000 held-out points alone, and with 1% far points (20, at 10 to 50 from the origin in
    random directions) beside them; target: with far points <= 1.5x alone;
  - the near points' own evaluations in both runs (each point steps alone, so they should not
    move);
  - scipy's shared-step RK23 on the same held-out points alone: which solver the service keeps.
--quick: 200 held-out points and 2 far ones.
"""

from __future__ import annotations

import numpy as np
import torch

from experiments.bench_spec import verdict
from service.api.settings import Settings
from service.core.data import get_dataset
from service.core.likelihood import HELDOUT_SEED, model_log_likelihood
from service.core.store import CheckpointStore

MODEL = "moons-plain-improved"
TARGET = 1.5
FAR_FRACTION = 0.01


def far_points(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angle, radius = rng.uniform(0, 2 * np.pi, count), rng.uniform(10, 50, count)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _run(result) -> dict:
    return {
        "seconds": result.seconds,
        "calls": result.nfev,
        "finite": int(result.finite.sum()),
        "evaluations_mean": float(result.evaluations.mean()),
        "evaluations_max": int(result.evaluations.max()),
    }


def loglik_cost(store: CheckpointStore, device: torch.device, quick: bool, bar=None) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the service's solver thread
    try:
        model = store.load_ready(MODEL, device)
        n = 200 if quick else 2000
        near = get_dataset("moons", n, HELDOUT_SEED)
        far = far_points(max(1, round(n * FAR_FRACTION)))
        cap = Settings().loglik_max_evaluations
        alone = model_log_likelihood(model, near, max_evaluations=cap)
        _tick(bar)
        both = model_log_likelihood(model, np.concatenate([near, far]), max_evaluations=cap)
        _tick(bar)
        shared = model_log_likelihood(model, near, solver="scipy") if device.type == "cpu" else None
        _tick(bar)
    finally:
        torch.set_num_threads(threads)
    report = {
        "model": MODEL,
        "device": str(device),
        "points": n,
        "far_points": len(far),
        "cap": cap,
        "alone": _run(alone),
        "with_far": _run(both),
        "far_finite": int(both.finite[n:].sum()),
        "far_evaluations": both.evaluations[n:].tolist(),
        "near_evaluations_ratio": float(both.evaluations[:n].sum() / alone.evaluations.sum()),
        "near_max_abs_change_nats": float(
            np.nanmax(np.abs(both.log_density[:n] - alone.log_density))
        ),
        "ratio": both.seconds / alone.seconds,
        "target": TARGET,
    }
    if shared is not None:
        report["scipy_alone"] = _run(shared)
        report["scipy_max_abs_difference_nats"] = float(
            np.nanmax(np.abs(shared.log_density - alone.log_density))
        )
    return report


def _tick(bar) -> None:
    if bar is not None:
        bar.update(1)


def render(r: dict) -> list[str]:
    a, b = r["alone"], r["with_far"]
    lines = [
        "## Likelihood with far points",
        "",
        f"{r['model']} on the {r['device'].upper()}, one torch thread, rtol = atol = 1e-5, "
        f"cap {r['cap']:,} evaluations a point. {r['points']:,} held-out points alone: "
        f"{a['seconds']:.1f} s, {a['calls']:,} calls, {a['evaluations_mean']:,.0f} evaluations "
        f"a point on average (hardest {a['evaluations_max']:,}). With {r['far_points']} far "
        f"points (10 to 50 from the origin) beside them: {b['seconds']:.1f} s, {b['calls']:,} "
        f"calls; the far points took {min(r['far_evaluations']):,} to "
        f"{max(r['far_evaluations']):,} evaluations, {r['far_finite']} of them finite.",
        "",
        f"- Time with far points over alone: **{r['ratio']:.2f}x** (target <= {r['target']}x: "
        f"{verdict(r['ratio'] <= r['target'])}).",
        f"- The near points' evaluations with far points over alone: "
        f"{r['near_evaluations_ratio']:.3f}x; their log-densities moved by at most "
        f"{r['near_max_abs_change_nats']:.1e} nats.",
    ]
    if "scipy_alone" in r:
        s = r["scipy_alone"]
        lines.append(
            f"- scipy's shared-step RK23 on the same {r['points']:,} points alone: "
            f"{s['seconds']:.1f} s and {s['calls']:,} calls of every point "
            f"({s['seconds'] / a['seconds']:.2f}x the per-point solver's time); the two agree "
            f"within {r['scipy_max_abs_difference_nats']:.1e} nats."
        )
    return [*lines, ""]
