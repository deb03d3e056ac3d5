"""Sample, then score: the one evaluation `POST /evaluate`, `dgs reproduce` and the worker share.

Scores: KL (bits) of the data against the finite samples, improved precision and recall
(`core.coverage`) against an equal-sized subset of the same reference data, with the same k,
and the exact metrics against the dataset's true density (`core.exact.metrics`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache

from service.core.coverage import coverage_against_data
from service.core.data import reference_points
from service.core.exact.metrics import ExactScores, exact_scores
from service.core.kl import DEFAULT_K, finite_rows, kl_divergence_bits, mean_log_rho
from service.core.model import ReadyModel
from service.core.offline import SampleResult, sample
from service.core.spec import SampleSpec


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
    # improved precision / recall (k-NN balls, same k) of the finite samples against as many
    # reference points; nan when fewer than k + 1 samples are finite
    precision: float
    recall: float
    nonfinite: int
    nonfinite_fraction: float
    sampling_seconds: float  # the whole reverse process for the batch of n
    seconds_per_sample: float
    # against the dataset's exact density (core/exact/metrics.py)
    exact: ExactScores | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@cache
def reference_mean_log_rho(dataset: str, k: int) -> float:
    """The data-only half of the KL estimate, once per (dataset, k) per process."""
    return mean_log_rho(reference_points(dataset), k)


def score(model: ReadyModel, result: SampleResult, k: int = DEFAULT_K) -> Evaluation:
    """KL in bits, precision and recall of a finished sample against the model's dataset.

    Non-finite rows are counted, then left out of every score.
    """
    finite, dropped = finite_rows(result.samples)
    n = len(result.samples)
    if len(finite) > k:
        data = reference_points(model.dataset)
        kl = kl_divergence_bits(data, finite, k, reference_mean_log_rho(model.dataset, k))
        coverage = coverage_against_data(model.dataset, finite, k)
        precision, recall = coverage.precision, coverage.recall
    else:
        kl = precision = recall = math.nan
    return Evaluation(
        model=model.name,
        dataset=model.dataset,
        variant=result.variant,
        scale=result.scale,
        n=n,
        seed=result.seed,
        k=k,
        kl_bits=kl,
        precision=precision,
        recall=recall,
        nonfinite=dropped,
        nonfinite_fraction=dropped / n,
        sampling_seconds=result.seconds,
        seconds_per_sample=result.seconds / n,
        exact=exact_scores(model.dataset, result.samples),
    )


def evaluate(
    model: ReadyModel, spec: SampleSpec, k: int = DEFAULT_K, guide: ReadyModel | None = None
) -> Evaluation:
    """Sample as `spec` asks, then score."""
    return score(model, sample(model, spec, guide), k)
