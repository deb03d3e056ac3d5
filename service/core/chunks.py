"""Row chunks: a request's rows in pieces of at most CHUNK_ROWS, each with its own random
stream (seeded by the request's seed and the chunk's index, so its numbers never depend on what
ran beside it or when) and its own guider and sampler state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from service.core.plan import Plan

CHUNK_ROWS = 256


def chunk_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for chunk `index` of a request seeded with `seed`."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def chunk_sizes(n: int, chunk_rows: int = CHUNK_ROWS) -> list[int]:
    return [min(chunk_rows, n - start) for start in range(0, n, chunk_rows)]


@dataclass
class RowChunk:
    """Up to CHUNK_ROWS rows of one request, with their own random stream and guidance state."""

    plan: Plan
    rows: int
    generator: torch.Generator
    device: torch.device
    position: int  # the next position k to run, counting down; -1 when finished
    x: torch.Tensor | None = None  # (rows, 2); drawn at the first step
    # the guider's per-row state (Guider.state_width floats: an EMA, a momentum)
    guider_state: torch.Tensor | None = field(default=None, repr=False)
    tracking: Any = field(default=None, repr=False)  # Density Guidance's log p, per chunk
    sampler_state: torch.Tensor | None = field(default=None, repr=False)  # the sampler's memory
    # On CUDA the starting point and every step's noise are drawn in one call when the chunk
    # starts: a kernel launch per chunk per step was most of a GPU step's time.
    noise: torch.Tensor | None = field(default=None, repr=False)  # (num_steps + 1, rows, 2)
    draws: int = 0
    # A streamed request's preview rows: each evaluation also leaves its prediction of x_0
    # here. Off for every other chunk, which then costs nothing extra.
    preview: bool = False
    x0: torch.Tensor | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.position < 0

    @property
    def started(self) -> bool:
        return self.x is not None

    def draw(self) -> torch.Tensor:
        if self.device.type == "cpu":
            return torch.randn(self.rows, 2, generator=self.generator, device=self.device)
        if self.noise is None:
            draws = self.plan.evaluations + 1 if self.plan.sampler.stochastic else 1
            shape = (draws, self.rows, 2)
            self.noise = torch.randn(shape, generator=self.generator, device=self.device)
        self.draws += 1
        return self.noise[self.draws - 1]


def make_chunks(plan: Plan, n: int, seed: int, device: torch.device) -> list[RowChunk]:
    return [
        RowChunk(
            plan,
            rows,
            torch.Generator(device=device).manual_seed(chunk_seed(seed, i)),
            device,
            plan.evaluations - 1,
        )
        for i, rows in enumerate(chunk_sizes(n))
    ]
