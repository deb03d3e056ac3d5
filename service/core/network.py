"""The denoiser (docs/DESIGN.md#3-the-denoiser-and-objectives): sinusoidal embeddings ->
residual MLP -> (eps, log p_hat).

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
    out_dim: int = 3  # eps (2) + log p_hat (1); 1 for an energy network
    # relu (the paper's); silu for energy networks, whose eps is a gradient: ReLU's would jump
    activation: str = "relu"
    # class-conditional: a learned vector per class, plus one for the null class
    # (index num_classes, what label dropout trains), added to the first layer's output as
    # the time embedding is. 0: unconditional, no such table.
    num_classes: int = 0


def sinusoidal_embedding(v: torch.Tensor, dim: int, scale: float) -> torch.Tensor:
    """(B,) -> (B, dim): half sin, half cos, frequencies exp(-log(10000) i / (dim/2 - 1))."""
    half = dim // 2
    v = v if v.is_floating_point() else v.float()  # integer timesteps -> float32
    freqs = torch.exp(
        -math.log(10000.0) / (half - 1) * torch.arange(half, device=v.device, dtype=v.dtype)
    )
    angles = (v * scale).unsqueeze(-1) * freqs.unsqueeze(0)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


ACTIVATIONS = {"relu": F.relu, "silu": F.silu}


class ResidualBlock(nn.Module):
    def __init__(self, width: int, activation: str = "relu"):
        super().__init__()
        self.ff = nn.Linear(width, width)
        self.act = ACTIVATIONS[activation]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.ff(self.act(h))


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
        self.blocks = nn.ModuleList(
            ResidualBlock(c.hidden_dim, c.activation) for _ in range(c.hidden_layers)
        )
        self.act = ACTIVATIONS[c.activation]
        self.output = nn.Linear(c.hidden_dim, c.out_dim)
        self.label = nn.Embedding(c.num_classes + 1, c.hidden_dim) if c.num_classes else None

    def label_hidden(self, labels: torch.Tensor | None, rows: int) -> torch.Tensor | float:
        """(B,) class indices (None: every row the null class) -> their share of the first
        layer; 0 for an unconditional network."""
        if self.label is None:
            return 0.0
        if labels is None:
            labels = torch.full((rows,), self.config.num_classes, device=self.label.weight.device)
        return self.label(labels)

    def time_hidden(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) timesteps -> (B, hidden): the time embedding's share of the first layer + bias."""
        c = self.config
        emb = sinusoidal_embedding(t, c.embedding_dim, c.time_scale)
        return F.linear(emb, self.input.weight[:, 2 * c.embedding_dim :], self.input.bias)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        t_hidden: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
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
        if self.label is not None:
            h = h + self.label_hidden(labels, len(x))
        for block in self.blocks:
            h = block(h)
        return self.output(self.act(h))


@dataclass(frozen=True)
class InferenceWeights:
    """A denoiser's weights laid out for sampling: contiguous, pre-transposed, constants hoisted.

    The same function as `Denoiser.forward` (the time share of the first layer comes in as
    `t_hidden`), minus per-call slicing, copies and frequency tables.
    """

    freqs: torch.Tensor  # (half,) embedding frequencies
    coord_scale: float
    w_xy: torch.Tensor  # (hidden, 2 emb) first layer, coordinate columns (for the backward)
    w_xy_t: torch.Tensor  # (2 emb, hidden)
    blocks: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...]  # (W, W^T, b)
    w_out_t: torch.Tensor  # (hidden, out_dim)
    b_out: torch.Tensor  # (out_dim,)
    w_log_p: torch.Tensor  # (hidden,) the output layer's last row: log p_hat, or energy's f
    silu: bool = False  # the activation: relu, or silu (energy networks)


@torch.no_grad()
def inference_weights(net: Denoiser) -> InferenceWeights:
    c = net.config
    half = c.embedding_dim // 2
    w = net.input.weight
    freqs = torch.exp(
        -math.log(10000.0) / (half - 1) * torch.arange(half, device=w.device, dtype=w.dtype)
    )
    w_xy = w[:, : 2 * c.embedding_dim].contiguous()
    blocks = tuple(
        (b.ff.weight.contiguous(), b.ff.weight.t().contiguous(), b.ff.bias.contiguous())
        for b in net.blocks
    )
    return InferenceWeights(
        freqs,
        c.coord_scale,
        w_xy,
        w_xy.t().contiguous(),
        blocks,
        net.output.weight.t().contiguous(),
        net.output.bias.contiguous(),
        net.output.weight[-1].contiguous(),  # log p_hat, or the energy's f
        c.activation == "silu",
    )


def _embed(iw: InferenceWeights, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(B, 2) -> emb (B, 4 half) laid out [sin x1, cos x1, sin x2, cos x2], and its sin, cos."""
    angles = (x * iw.coord_scale).unsqueeze(-1) * iw.freqs  # (B, 2, half), as the network
    sin, cos = torch.sin(angles), torch.cos(angles)
    return torch.stack([sin, cos], dim=2).view(x.shape[0], -1), sin, cos


@torch.no_grad()
def infer(iw: InferenceWeights, x: torch.Tensor, t_hidden: torch.Tensor) -> torch.Tensor:
    """The forward pass for sampling: x (B, 2), t_hidden (B, hidden) -> (B, 3)."""
    emb, _, _ = _embed(iw, x)
    act = F.silu if iw.silu else torch.relu
    h = torch.addmm(t_hidden, emb, iw.w_xy_t)
    for _, w_t, b in iw.blocks:
        h = torch.addmm(b, act(h), w_t).add_(h)
    return torch.addmm(iw.b_out, act(h), iw.w_out_t)


@torch.no_grad()
def infer_with_density_gradient(
    iw: InferenceWeights, x: torch.Tensor, t_hidden: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward pass and grad_x log p_hat in one sweep, without an autograd graph.

    -> (out (B, 3), grad (B, 2)). The backward is written out - the vector-Jacobian products
    of the output layer, each residual block, the first layer and the sine embedding - so a
    guided step costs one forward plus four (B, hidden) x (hidden, hidden) products and no
    autograd bookkeeping. tests/core/test_network.py checks it against torch.autograd.
    """
    emb, sin, cos = _embed(iw, x)
    act = F.silu if iw.silu else torch.relu
    hs = [torch.addmm(t_hidden, emb, iw.w_xy_t)]
    for _, w_t, b in iw.blocks:
        h = hs[-1]
        hs.append(torch.addmm(b, act(h), w_t).add_(h))
    out = torch.addmm(iw.b_out, act(hs[-1]), iw.w_out_t)
    # grad * act'(h): relu's in one fused pass (grad * (h > 0)), silu's from its sigmoid
    backward = _silu_backward if iw.silu else _relu_backward
    g = backward(iw.w_log_p.expand_as(hs[-1]), hs[-1])  # out[:, -1] = w . act(h) + b
    for (w, _, _), h in zip(reversed(iw.blocks), reversed(hs[:-1]), strict=True):
        g = g + backward(g @ w, h)  # h_next = h + W act(h) + b
    g_emb = (g @ iw.w_xy).view(-1, 2, 2, sin.shape[-1])  # (B, coord, [sin, cos], half)
    d_angles = g_emb[:, :, 0] * cos - g_emb[:, :, 1] * sin  # (B, 2, half)
    # A row-wise multiply-and-sum, not `d_angles @ freqs`: that matrix-vector product (MKL's
    # gemv) sums the last row of an odd-sized batch in another order, so a row's gradient
    # depended on where it sat in the batch, and 100 guided steps grew 1 ulp into another sample.
    return out, (d_angles * iw.freqs).sum(-1) * iw.coord_scale


def _relu_backward(grad: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.threshold_backward(grad, h, 0.0)


def _silu_backward(grad: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.silu_backward(grad, h)


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
