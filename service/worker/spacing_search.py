"""The spacing search: a model's few-step timesteps, tuned on its own samples' KL, written beside
it in the store (core/tuned_spacing.py; docs/DESIGN.md#4-samplers).

Coordinate descent over the kept timesteps of an S-step run: position by position (the top,
T - 1, stays), try up to `candidates` timesteps between its neighbours and keep the one that
lowers the symmetric k-NN KL (`trial_kl`) by more than `tolerance`; sweep until a sweep
changes nothing.
Every trial samples the same seed (common random numbers: candidates differ by their
timesteps, not their noise), on a tuning seed the reported figures never use. A smaller S
starts from the larger S's answer interpolated (Align Your Steps' rule), a larger one from
evenly spaced timesteps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from service.core.data import reference_points
from service.core.evaluation import reference_mean_log_rho
from service.core.kl import DEFAULT_K, finite_rows, kl_divergence_bits
from service.core.model import ReadyModel
from service.core.offline import sample
from service.core.samplers import get_sampler, sampler_params
from service.core.schedule import full_alpha_bar
from service.core.spacing import TUNED, kept_timesteps, log_sigma
from service.core.spec import SampleSpec
from service.core.tuned_spacing import TunedSpacing

TUNING_SEED = 1  # the reported figures use seed 0


@dataclass(frozen=True)
class Searched:
    steps: int
    kept: tuple[int, ...]
    kl_start: float
    kl_tuned: float
    trials: int
    seconds: float


def trial_kl(model: ReadyModel, sampler: str, params: dict, kept: list[int], n: int, seed: int):
    """The symmetric k-NN KL (bits), KL(data || samples) + KL(samples || data), of n samples of
    an S-step run on exactly these timesteps. Both directions: KL(data || samples) alone is
    lowered by samples concentrated on the data's densest parts (a search found a moons run
    whose exact KL(samples || data) was 6x 100-step DDPM's at an equal KL(data || samples))."""
    steps = len(kept)
    table = TunedSpacing(model.id, sampler, {steps: tuple(kept)})
    trial = replace(model, tuned_spacing=table, plans={}, _respaced={})
    spec = SampleSpec(
        n=n, seed=seed, steps=steps, sampler=sampler, sampler_params=params, spacing=TUNED
    )
    finite, _ = finite_rows(sample(trial, spec).samples)
    if len(finite) <= DEFAULT_K:
        return float("inf")
    data = reference_points(model.dataset)
    forward = kl_divergence_bits(
        data, finite, DEFAULT_K, reference_mean_log_rho(model.dataset, DEFAULT_K)
    )
    return forward + kl_divergence_bits(finite, data, DEFAULT_K)


def search(
    objective: Callable[[list[int]], float],
    start: list[int],
    candidates: int = 10,
    tolerance: float = 0.005,
    max_sweeps: int = 6,
    log: Callable[[list[int], float, int], None] | None = None,
) -> Searched:
    """Coordinate descent of `objective` over the kept timesteps, from `start` (ascending, its
    last, T - 1, fixed): each position tries up to `candidates` timesteps between its
    neighbours and takes the best one that gains more than `tolerance`."""
    kept, steps = list(start), len(start)
    began = time.perf_counter()
    best = first = objective(kept)
    trials = 1
    for sweep in range(max_sweeps):
        changed = False
        for i in range(steps - 1):  # T - 1 stays: the prior N(0, I) is there
            lo, hi = (kept[i - 1] + 1 if i else 0), kept[i + 1] - 1
            options = range(lo, hi + 1)
            if len(options) > candidates:
                options = np.unique(np.linspace(lo, hi, candidates).round().astype(int))
            for t in options:
                if t == kept[i]:
                    continue
                trial = [*kept[:i], int(t), *kept[i + 1 :]]
                value = objective(trial)
                trials += 1
                if value < best - tolerance:
                    best, kept, changed = value, trial, True
        if log is not None:
            log(kept, best, sweep)
        if not changed:
            break
    return Searched(steps, tuple(kept), first, best, trials, time.perf_counter() - began)


def interpolated(model: ReadyModel, sampler: str, table: dict, steps: int) -> list[int]:
    """`steps` timesteps from a table of other step counts (Align Your Steps' rule)."""
    log_sig = log_sigma(full_alpha_bar(model.schedule.config))
    return TunedSpacing(model.id, sampler, table).kept(steps, log_sig)


def subdivided(model: ReadyModel, kept: tuple[int, ...], steps: int) -> list[int]:
    """A smaller S's answer with timesteps added, one at a time, at the middle (in log sigma) of
    its widest gap: it keeps every step the search chose, where interpolation moves them all."""
    log_sig = log_sigma(full_alpha_bar(model.schedule.config)).numpy()
    t = sorted(kept)
    while len(t) < steps:
        gaps = [
            (log_sig[b] - log_sig[a], a, b) for a, b in zip(t, t[1:], strict=False) if b > a + 1
        ]
        if not gaps:  # no room between neighbours: fill from the bottom
            t = sorted(set(t) | {min(set(range(len(log_sig))) - set(t))})
            continue
        _, a, b = max(gaps)
        middle = (log_sig[a] + log_sig[b]) / 2
        t = sorted(t + [a + 1 + int(np.argmin(np.abs(log_sig[a + 1 : b] - middle)))])
    return t


def tune(
    model: ReadyModel,
    sampler: str,
    step_counts: list[int],
    n: int = 4000,
    log: Callable[[str], None] | None = None,
    existing: TunedSpacing | None = None,
) -> TunedSpacing:
    """Search every step count and gather them into the model's tuned spacing.

    Two passes: largest S first, each smaller one starting from the answers so far
    interpolated (the largest from evenly spaced timesteps); then smallest first, where a
    smaller S's answer interpolated up, or subdivided (its steps kept, the widest gaps split),
    beats a step count's own, a search from the better of the two (a local search's answer for
    S can miss what it found for fewer steps: moons' 10-step table was 0.122 bits against its
    8-step 0.050 until the subdivided start). `existing`: a model's
    tables to refine (the second pass only)."""
    params = sampler_params(get_sampler(sampler), {})

    def objective(kept: list[int]) -> float:
        return trial_kl(model, sampler, params, kept, n, TUNING_SEED)

    def run(steps: int, start: list[int]) -> Searched:
        def progress(kept: list[int], best: float, sweep: int) -> None:
            if log is not None:
                log(f"{model.name} S={steps} sweep {sweep}: {kept} {best:.3f} bits")

        return search(objective, start, log=progress)

    found: dict[int, tuple[int, ...]] = {}
    best: dict[int, Searched] = {}
    first: dict[int, float] = {}
    if existing is not None:
        for steps in sorted(step_counts):
            kept = list(
                existing.tables.get(steps) or interpolated(model, sampler, existing.tables, steps)
            )
            value = objective(kept)
            found[steps], first[steps] = tuple(kept), value
            best[steps] = Searched(steps, tuple(kept), value, value, 1, 0.0)
    else:
        for steps in sorted(step_counts, reverse=True):
            start = (
                interpolated(model, sampler, found, steps)
                if found
                else kept_timesteps(full_alpha_bar(model.schedule.config), steps, "uniform")
            )
            best[steps] = run(steps, start)
            found[steps], first[steps] = best[steps].kept, best[steps].kl_start
    counts = sorted(step_counts)
    for smaller, steps in zip(counts, counts[1:], strict=False):
        starts = [
            interpolated(model, sampler, {smaller: found[smaller]}, steps),
            subdivided(model, found[smaller], steps),
        ]
        value, start = min((objective(k), k) for k in starts)
        if value < best[steps].kl_tuned - 0.005:
            result = run(steps, start)
            if result.kl_tuned < best[steps].kl_tuned:
                best[steps] = replace(result, trials=result.trials + best[steps].trials)
                found[steps] = result.kept
    rows = [best[s] for s in counts]
    tuning = {
        "objective": f"KL(data || samples) + KL(samples || data), k-NN, k = {DEFAULT_K}, bits",
        "n": n,
        "seed": TUNING_SEED,
        "sampler_params": params,
        "kl_start": {str(s): round(first[s], 4) for s in counts},
        "kl_tuned": {str(r.steps): round(r.kl_tuned, 4) for r in rows},
        "trials": sum(r.trials for r in rows),
        "seconds": round(sum(r.seconds for r in rows), 1),
    }
    if existing is not None:  # what the first search started from, and what both cost
        tuning["kl_start"] = existing.tuning.get("kl_start", tuning["kl_start"])
        for key in ("trials", "seconds"):
            tuning[key] = round(tuning[key] + existing.tuning.get(key, 0), 1)
    return TunedSpacing(model.id, sampler, found, tuning)
