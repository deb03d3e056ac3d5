"""The small classifier p(c | x) behind E[1 / p(c | x)] (Li & Jiao 2025's measure;
docs/DESIGN.md#7-metrics).

A classifier trained on the clean labelled data estimates the data's class posterior. Li & Jiao
prove that guidance lowers the average reciprocal posterior of the target class over the samples,
E[1 / p(c | x)], even where it does not improve every sample; a sample from the class's own
distribution scores E = (1 / prior(c)) * (mass of the data where class c has density), which is
2 for two overlapping classes of equal weight and 1 for disjoint ones (tests/core check both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# A sample the classifier rules out (p(c | x) -> 0: the other class's support, or far off) counts
# 1 / PROBABILITY_FLOOR, not infinity: E[1 / p] then reads as about 1 + 1e6 x (the fraction so
# placed), and one stray sample cannot make it overflow.
PROBABILITY_FLOOR = 1e-6


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int = 2
    hidden_dim: int = 64
    hidden_layers: int = 2


class Classifier(nn.Module):
    """x (B, 2) -> class logits (B, C): an MLP with SiLU (smooth posteriors between classes)."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = [nn.Linear(2, config.hidden_dim), nn.SiLU()]
        for _ in range(config.hidden_layers - 1):
            layers += [nn.Linear(config.hidden_dim, config.hidden_dim), nn.SiLU()]
        layers.append(nn.Linear(config.hidden_dim, config.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mean_reciprocal_probability(probability: np.ndarray) -> float:
    """E[1 / p(c | x)] over samples, given each sample's p(c | x) of the target class."""
    return float(np.mean(1.0 / np.asarray(probability, dtype=np.float64)))


@torch.no_grad()
def class_probability(classifier: Classifier, points: np.ndarray, label: int) -> np.ndarray:
    """p(label | x) per point (float64), floored at PROBABILITY_FLOOR."""
    device = next(classifier.parameters()).device
    logits = classifier(torch.tensor(np.asarray(points), dtype=torch.float32, device=device))
    log_p = F.log_softmax(logits.double(), dim=-1)[:, label]
    # an oracle's exact posterior is 0 / 0 (NaN) off every class's support: that point is
    # ruled out, as one far off is, not a NaN that makes E[1 / p] NaN for the whole sample
    return torch.nan_to_num(log_p.exp(), nan=0.0).clamp(min=PROBABILITY_FLOOR).cpu().numpy()


@torch.no_grad()
def accuracy(classifier: Classifier, points: np.ndarray, labels: np.ndarray) -> float:
    device = next(classifier.parameters()).device
    logits = classifier(torch.tensor(np.asarray(points), dtype=torch.float32, device=device))
    return float((logits.argmax(-1).cpu().numpy() == labels).mean())
