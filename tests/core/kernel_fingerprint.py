"""Whether this machine's CPU kernels round as those of the machine that made a golden file.

torch picks its matmul and sin/cos kernels by the processor's instruction set, and two kernels
round differently: bit-identical goldens hold only on a machine whose kernels match. The
fingerprint is those kernels alone (torch ops on seeded data, none of our code), at the shapes
the sampler runs, so a change in our code can never make it match or mismatch.
"""

from __future__ import annotations

import numpy as np
import torch

ROWS = (16, 50, 257, 1000, 1024)


def kernel_fingerprint() -> np.ndarray:
    g = torch.Generator().manual_seed(1234)
    parts = []
    w = torch.randn(256, 256, generator=g) / 16
    w_out = torch.randn(256, 3, generator=g) / 16
    b = torch.randn(256, generator=g)
    freqs = torch.exp(-torch.arange(64) * (np.log(1e4) / 63))
    for rows in ROWS:
        x = torch.randn(rows, 2, generator=g)
        angles = (x * 25.0).unsqueeze(-1) * freqs
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).view(rows, 256)
        h = torch.addmm(b, torch.relu(emb), w)
        parts += [emb.sum(0), torch.addmm(b[:3], torch.relu(h), w_out).ravel(), (h @ w.t())[0]]
    return torch.cat(parts).numpy()


def matches(recorded: np.ndarray) -> bool:
    return np.array_equal(kernel_fingerprint(), recorded)
