"""Train the small classifier p(c | x) a class-conditional model ships with (core/classifier.py).

Cross-entropy on the same 100,000 labelled points the denoiser learns from; accuracy on 20,000
fresh points of another seed, beside the Bayes rule's where the dataset's classes overlap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from safetensors.torch import save as save_safetensors

from service.core.classifier import Classifier, ClassifierConfig, accuracy
from service.core.data import get_labelled

CLASSIFIER_FILE = "classifier.safetensors"
HELDOUT_SEED, HELDOUT_N = 7, 20_000


@dataclass(frozen=True)
class ClassifierTraining:
    steps: int = 2_000
    batch_size: int = 512
    lr: float = 3e-3
    seed: int = 0


def train_classifier(
    dataset: str, config: ClassifierConfig, training: ClassifierTraining = ClassifierTraining()
) -> tuple[Classifier, dict]:
    """-> (the classifier, in eval mode; what its manifest entry says about it)."""
    torch.manual_seed(training.seed)
    points, labels = get_labelled(dataset)
    x, y = torch.from_numpy(points), torch.from_numpy(labels)
    net = Classifier(config)
    opt = torch.optim.Adam(net.parameters(), lr=training.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, training.steps)
    g = torch.Generator().manual_seed(training.seed)
    for _ in range(training.steps):
        idx = torch.randint(0, len(x), (training.batch_size,), generator=g)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    held_points, held_labels = get_labelled(dataset, HELDOUT_N, HELDOUT_SEED)
    info = {
        "config": asdict(config),
        "training": asdict(training),
        "train_accuracy": accuracy(net, points, labels),
        "heldout_accuracy": accuracy(net, held_points, held_labels),
        "heldout_n": HELDOUT_N,
        "heldout_seed": HELDOUT_SEED,
    }
    return net, info


def classifier_bytes(net: Classifier) -> bytes:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return save_safetensors(state, metadata={"kind": "classifier"})
