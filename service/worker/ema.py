"""EMA of the weights, as the reference's EMA helper (ema-pytorch) schedules it.

Plain copies on every `every`-th step up to `start`; after that, on every `every`-th step,
ema <- lerp(ema, model, 1 - d) with d = min(cap, 1 - (1 + step - start)^(-power)).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from service.worker.recipes import TrainConfig


def ema_decay(step: int, config: TrainConfig) -> float:
    return min(config.ema_decay, 1 - (1 + step - config.ema_start) ** (-config.ema_power))


class EMA:
    def __init__(self, model: nn.Module, config: TrainConfig):
        self.config = config
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        c = self.config
        if step % c.ema_every != 0:
            return
        pairs = zip(self.model.parameters(), model.parameters(), strict=True)
        if step <= c.ema_start:
            for ema_p, p in pairs:
                ema_p.copy_(p)
            return
        weight = 1 - ema_decay(step, c)
        for ema_p, p in pairs:
            ema_p.lerp_(p, weight)
