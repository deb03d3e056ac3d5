"""Sample, then score: the one evaluation `POST /evaluate`, `dgs reproduce` and the worker share."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache

from service.core.data import reference_points
from service.core.kl import DEFAULT_K, finite_rows, kl_divergence_bits, mean_log_rho
from service.core.model import ReadyModel
from service.core.sampling import SampleResult, sample


@dataclass(frozen=True)
class Evaluation:
    model: str
    dataset: str
    variant: str
    scale: float
    n: int
    seed: int
    k: int
    kl_bits: float  # KL(data || finite samples); nan when too few samples are finite
    nonfinite: int
    nonfinite_fraction: float
    sampling_seconds: float  # the whole reverse process for the batch of n
    seconds_per_sample: float

    def as_dict(self) -> dict:
        return asdict(self)


@cache
def reference_mean_log_rho(dataset: str, k: int) -> float:
    """The data-only half of the KL estimate, once per (dataset, k) per process."""
    return mean_log_rho(reference_points(dataset), k)


def score(model: ReadyModel, result: SampleResult, k: int = DEFAULT_K) -> Evaluation:
    """KL in bits of a finished sample against the model's dataset (non-finite rows counted)."""
    finite, dropped = finite_rows(result.samples)
    n = len(result.samples)
    if len(finite) > k:
        data = reference_points(model.dataset)
        kl = kl_divergence_bits(data, finite, k, reference_mean_log_rho(model.dataset, k))
    else:
        kl = math.nan
    return Evaluation(
        model=model.name,
        dataset=model.dataset,
        variant=result.variant,
        scale=result.scale,
        n=n,
        seed=result.seed,
        k=k,
        kl_bits=kl,
        nonfinite=dropped,
        nonfinite_fraction=dropped / n,
        sampling_seconds=result.seconds,
        seconds_per_sample=result.seconds / n,
    )


def evaluate(
    model: ReadyModel,
    variant: str = "baseline",
    scale: float | None = None,
    n: int = 10_000,
    seed: int = 0,
    k: int = DEFAULT_K,
    steps: int | None = None,
    sampler: str = "ddpm",
    eta: float | None = None,
) -> Evaluation:
    return score(model, sample(model, variant, scale, n, seed, steps, sampler, eta), k)
