"""Scores of a class-conditional sample against its class (docs/DESIGN.md#7-metrics), each
beside the same score of the class's own data, which is what a perfect sampler gets.

support fraction and mean distance from the class's centre (core/classes.py), KL to the class's
data (the k-NN estimator of core/kl.py, as `kl_bits`), and E[1 / p(c | x)] under the classifier
the worker trained with the model (core/classifier.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np

from service.core import classes
from service.core.classifier import accuracy, class_probability, mean_reciprocal_probability
from service.core.data import get_labelled
from service.core.kl import finite_rows, kl_divergence_bits, mean_log_rho
from service.core.model import ReadyModel


@dataclass(frozen=True)
class ClassScores:
    label: int
    class_name: str
    support_fraction: float
    data_support_fraction: float
    support_rule: str
    mean_centre_distance: float
    data_mean_centre_distance: float
    mean_shift_away: float  # from the class's centre, away from the other class (data: 0)
    class_kl_bits: float | None
    mean_reciprocal_probability: float
    data_mean_reciprocal_probability: float
    classified_fraction: float  # finite samples the classifier puts in the class
    classifier_heldout_accuracy: float

    def as_dict(self) -> dict:
        return asdict(self)


@cache
def _class_mean_log_rho(dataset: str, label: int, k: int) -> float:
    return mean_log_rho(classes.class_reference(dataset, label), k)


@cache
def _data_reciprocal(model_id: str, dataset: str, label: int, classifier) -> float:
    reference = classes.class_reference(dataset, label)
    return mean_reciprocal_probability(class_probability(classifier, reference, label))


def has_class_metrics(model: ReadyModel, label: int | None) -> bool:
    return (
        label is not None and model.dataset in classes.CLASS_SPECS and model.classifier is not None
    )


def class_scores(model: ReadyModel, samples: np.ndarray, label: int, k: int) -> ClassScores:
    """The scores of `samples` (non-finite rows dropped) as draws of class `label`."""
    dataset = model.dataset
    finite, _ = finite_rows(samples)
    reference = classes.class_reference(dataset, label)
    kl = None
    if len(finite) > k:
        kl = kl_divergence_bits(reference, finite, k, _class_mean_log_rho(dataset, label, k))
        kl = None if math.isnan(kl) else kl
    spec = classes.CLASS_SPECS[dataset][label]
    empty = len(finite) == 0
    prob = np.empty(0) if empty else class_probability(model.classifier, finite, label)
    # two classes: argmax is p > 1/2 (the service's datasets all have two)
    classified = math.nan if empty else float((prob > 1.0 / model.num_classes).mean())
    return ClassScores(
        label=label,
        class_name=spec.name,
        support_fraction=math.nan if empty else classes.support_fraction(dataset, label, finite),
        data_support_fraction=classes.data_support_fraction(dataset, label),
        support_rule=spec.rule,
        mean_centre_distance=(
            math.nan if empty else classes.mean_centre_distance(dataset, label, finite)
        ),
        data_mean_centre_distance=classes.mean_centre_distance(dataset, label, reference),
        mean_shift_away=math.nan if empty else classes.mean_shift_away(dataset, label, finite),
        class_kl_bits=kl,
        mean_reciprocal_probability=math.nan if empty else mean_reciprocal_probability(prob),
        data_mean_reciprocal_probability=_data_reciprocal(
            model.id, dataset, label, model.classifier
        ),
        classified_fraction=classified,
        classifier_heldout_accuracy=heldout_accuracy(model),
    )


HELDOUT_LABELLED = (10_000, 2_026)  # (n, seed) of the labelled points an oracle's posterior scores


def heldout_accuracy(model: ReadyModel) -> float:
    """The classifier's held-out accuracy from its manifest; an oracle's exact posterior is
    scored here on held-out labelled points (the Bayes rule's accuracy)."""
    entry = model.manifest.get("classifier")
    if entry is not None:
        return float(entry["heldout_accuracy"])
    return _posterior_accuracy(model.id, model.dataset, model.classifier)


@cache
def _posterior_accuracy(model_id: str, dataset: str, classifier) -> float:
    points, labels = get_labelled(dataset, *HELDOUT_LABELLED)
    return accuracy(classifier, points, labels)
