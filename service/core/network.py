"""The denoiser of SPEC.md ("Denoiser"): sinusoidal embeddings -> residual MLP -> (eps, log p_hat).

Shapes: x (B, 2), t (B,) one timestep per row; output (B, 3) = 2 noise outputs + 1 log-density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DenoiserConfig:
    embedding_dim: int = 128
    hidden_dim: int = 256
    hidden_layers: int = 3
    coord_scale: float = 25.0
    time_scale: float = 1.0
    out_dim: int = 3  # eps (2) + log p_hat (1)


def sinusoidal_embedding(v: torch.Tensor, dim: int, scale: float) -> torch.Tensor:
    """(B,) -> (B, dim): half sin, half cos, frequencies exp(-log(10000) i / (dim/2 - 1))."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) / (half - 1) * torch.arange(half, device=v.device, dtype=torch.float32)
    )
    angles = (v.float() * scale).unsqueeze(-1) * freqs.unsqueeze(0)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.ff = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.ff(F.relu(h))


class Denoiser(nn.Module):
    """Linear(3*emb, hidden) -> residual blocks -> ReLU -> Linear(hidden, 3).

    The first layer is applied as two pieces (coordinates, time) so that samplers can cache the
    time piece per timestep: it is the same for every row at a given t.
    """

    def __init__(self, config: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.config = config
        c = config
        self.input = nn.Linear(3 * c.embedding_dim, c.hidden_dim)
        self.blocks = nn.ModuleList(ResidualBlock(c.hidden_dim) for _ in range(c.hidden_layers))
        self.output = nn.Linear(c.hidden_dim, c.out_dim)

    def time_hidden(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) timesteps -> (B, hidden): the time embedding's share of the first layer + bias."""
        c = self.config
        emb = sinusoidal_embedding(t, c.embedding_dim, c.time_scale)
        return F.linear(emb, self.input.weight[:, 2 * c.embedding_dim :], self.input.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, t_hidden: torch.Tensor | None = None
    ) -> torch.Tensor:
        c = self.config
        emb = torch.cat(
            [
                sinusoidal_embedding(x[:, 0], c.embedding_dim, c.coord_scale),
                sinusoidal_embedding(x[:, 1], c.embedding_dim, c.coord_scale),
            ],
            dim=-1,
        )
        if t_hidden is None:
            t_hidden = self.time_hidden(t)
        h = F.linear(emb, self.input.weight[:, : 2 * c.embedding_dim]) + t_hidden
        for block in self.blocks:
            h = block(h)
        return self.output(F.relu(h))


def split_output(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3) -> eps (B, 2), log p_hat (B,)."""
    return out[:, :2], out[:, 2]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_row(config: DenoiserConfig, cached_time: bool = True) -> int:
    """Dense matmul FLOPs (2 per multiply-add) of one forward pass for one row.

    With `cached_time` the time third of the first layer is looked up, not multiplied.
    """
    c = config
    in_features = (2 if cached_time else 3) * c.embedding_dim
    macs = in_features * c.hidden_dim + c.hidden_layers * c.hidden_dim**2 + c.hidden_dim * c.out_dim
    return 2 * macs
