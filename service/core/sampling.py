"""Ancestral DDPM sampling (SPEC.md "Noise schedule and DDPM sampling"), guided or not.

Rows live in chunks (`RowChunk`, at most CHUNK_ROWS rows of one request). `advance` runs one
reverse step for any set of chunks, each at its own position, from any mix of requests and
variants; the service's step-level batcher calls it. The offline `sample()` runs a request's
chunks as one block (`run_together`): the same arithmetic in the same order without the
per-chunk bookkeeping, so it gives the same numbers as the batcher (tests check bit-equality).

Reproducibility: each chunk draws its initial x and every step's noise from its own generator
seeded by (seed, chunk index), so its numbers never depend on what ran beside it or when.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from service.core.guidance import Variant, get_variant, guided_eps, resolve_scale
from service.core.model import ReadyModel, require_density_head
from service.core.network import infer, infer_with_density_gradient

CHUNK_ROWS = 256
# CPU GEMM kernels for fewer than ~12 rows round differently from the large-batch kernels;
# padding every forward to at least this many rows keeps a row's result independent of its batch.
MIN_FORWARD_ROWS = 16
# Per-position parameters of a plan, one row of floats each (see Plan.rows):
# ddpm_step's 5 coefficients, then the network's t, gamma_t, and the gradient EMA weight.
COEF, T_COL, GAMMA_COL, ALPHA_COL = slice(0, 5), 5, 6, 7
MAX_CACHED_PLANS = 1024


def chunk_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for chunk `index` of a request seeded with `seed`."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def chunk_sizes(n: int, chunk_rows: int = CHUNK_ROWS) -> list[int]:
    return [min(chunk_rows, n - start) for start in range(0, n, chunk_rows)]


@dataclass(frozen=True)
class Plan:
    """Everything fixed about a request's reverse process, one row of floats per position k."""

    variant: Variant
    scale: float
    num_steps: int
    rows: list[list[float]]  # rows[k] = [5 step coefficients, t, gamma_t, alpha]

    @property
    def needs_gradient(self) -> bool:
        return self.variant.needs_gradient


def make_plan(
    model: ReadyModel, variant: str, scale: float | None = None, steps: int | None = None
) -> Plan:
    """Check the request against the model and precompute its per-position parameters.

    Plans are cached on the model (up to MAX_CACHED_PLANS), so a server's event loop does no
    tensor work for a repeated request shape.
    """
    v = get_variant(variant)
    require_density_head(model, v.name, v.needs_gradient)
    used_scale = resolve_scale(v, scale)
    key = (v.name, used_scale, steps)
    if key in model.plans:
        return model.plans[key]
    s = model.schedule_for(steps)
    gamma = v.gamma(s.timesteps.cpu(), s.num_timesteps, used_scale)
    alpha = v.smoothing or 0.0
    columns = torch.stack(
        [
            s.sqrt_inv_alpha_bar.cpu(),
            s.sqrt_inv_alpha_bar_minus_one.cpu(),
            s.posterior_mean_coef1.cpu(),
            s.posterior_mean_coef2.cpu(),
            s.posterior_std.cpu(),
            s.timesteps.cpu().float(),
            gamma.float(),
            torch.full((s.num_steps,), alpha),
        ],
        dim=1,
    )
    plan = Plan(v, used_scale, s.num_steps, columns.tolist())
    if len(model.plans) < MAX_CACHED_PLANS:
        model.plans[key] = plan
    return plan


@dataclass
class RowChunk:
    """Up to CHUNK_ROWS rows of one request, with their own random stream and guidance state."""

    plan: Plan
    rows: int
    generator: torch.Generator
    device: torch.device
    position: int  # the next position k to run, counting down; -1 when finished
    x: torch.Tensor | None = None  # (rows, 2); drawn at the first step
    grad_state: torch.Tensor | None = field(default=None, repr=False)  # smoothed gradient
    # On CUDA the starting point and every step's noise are drawn in one call when the chunk
    # starts: a kernel launch per chunk per step was most of a GPU step's time.
    noise: torch.Tensor | None = field(default=None, repr=False)  # (num_steps + 1, rows, 2)
    draws: int = 0

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
            shape = (self.plan.num_steps + 1, self.rows, 2)
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
            plan.num_steps - 1,
        )
        for i, rows in enumerate(chunk_sizes(n))
    ]


def ddpm_step(
    x: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor, coef: torch.Tensor
) -> torch.Tensor:
    """One reverse step with per-row coefficients: x, eps, noise (B, 2); coef (B, 5).

    x0_hat = x / sqrt(ab) - sqrt(1/ab - 1) eps; mean = c1 x0_hat + c2 x; + std z (std 0 at t=0).
    """
    x0_hat = coef[:, 0:1] * x - coef[:, 1:2] * eps
    mean = coef[:, 2:3] * x0_hat + coef[:, 3:4] * x
    return mean + coef[:, 4:5] * noise


def _pad(x: torch.Tensor, t: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pad x and t with zero rows up to MIN_FORWARD_ROWS, or to a multiple of `multiple`."""
    rows = x.shape[0]
    target = max(rows, MIN_FORWARD_ROWS)
    if multiple:
        target = -(-rows // multiple) * multiple
    if target == rows:
        return x, t, rows
    extra = target - rows
    return torch.cat([x, x.new_zeros(extra, 2)]), torch.cat([t, t.new_zeros(extra)]), rows


def model_eps(
    model: ReadyModel, x: torch.Tensor, t: torch.Tensor, with_gradient: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Noise prediction (B, 2) and, if asked, grad_x log p_hat (B, 2), in blocks of rows.

    The gradient comes from a hand-written backward sweep: no autograd graph, one pass.
    """
    xp, tp, rows = _pad(x, t, model.block_rows if model.pad_blocks else 0)
    t_hidden = model.time_table[tp]
    block = model.block_rows or len(xp)
    eps_parts, grad_parts = [], []
    for start in range(0, len(xp), block):
        # a short tail block is merged into the previous one (>= MIN_FORWARD_ROWS, see _pad)
        if not model.pad_blocks and 0 < len(xp) - start - block < MIN_FORWARD_ROWS:
            block = len(xp) - start
        xs, hs = xp[start : start + block], t_hidden[start : start + block]
        if with_gradient:
            out, grad = infer_with_density_gradient(model.weights, xs, hs)
            grad_parts.append(grad)
        else:
            out = infer(model.weights, xs, hs)
        eps_parts.append(out[:, :2])
        if start + block >= len(xp):
            break
    eps = eps_parts[0] if len(eps_parts) == 1 else torch.cat(eps_parts)
    if not with_gradient:
        return eps[:rows], None
    grad = grad_parts[0] if len(grad_parts) == 1 else torch.cat(grad_parts)
    return eps[:rows], grad[:rows]


def advance(model: ReadyModel, chunks: list[RowChunk]) -> None:
    """Run one reverse step for every chunk, each at its own position, in batched passes.

    Guided rows share one forward + one backward pass; baseline rows one forward, no graph.
    """
    guided = [c for c in chunks if c.plan.needs_gradient]
    n_guided = sum(c.rows for c in guided)
    ordered = guided + [c for c in chunks if not c.plan.needs_gradient]
    sizes = [c.rows for c in ordered]
    total = sum(sizes)
    dev = model.device
    for c in ordered:
        if c.x is None:
            c.x = c.draw()
    params = torch.tensor([c.plan.rows[c.position] for c in ordered], device=dev)
    repeats = torch.tensor(sizes, device=dev)
    per_row = params.repeat_interleave(repeats, dim=0, output_size=total)  # (B, 8)
    x = torch.cat([c.x for c in ordered])
    t = per_row[:, T_COL].long()
    eps_parts, new_state = [], None
    if n_guided:
        eps, grad = model_eps(model, x[:n_guided], t[:n_guided], with_gradient=True)
        previous = torch.cat(
            [x.new_zeros(c.rows, 2) if c.grad_state is None else c.grad_state for c in guided]
        )
        gamma = per_row[:n_guided, GAMMA_COL : GAMMA_COL + 1]
        alpha = per_row[:n_guided, ALPHA_COL : ALPHA_COL + 1]
        eps, new_state = guided_eps(eps, grad, gamma, alpha, previous)
        eps_parts.append(eps)
    if total > n_guided:
        eps, _ = model_eps(model, x[n_guided:], t[n_guided:], with_gradient=False)
        eps_parts.append(eps)
    noise = torch.cat([c.draw() for c in ordered])
    x_next = ddpm_step(x, torch.cat(eps_parts), noise, per_row[:, COEF])
    for c, part in zip(ordered, x_next.split(sizes), strict=True):
        c.x = part
        c.position -= 1
    if new_state is not None:
        for c, state in zip(guided, new_state.split(sizes[: len(guided)]), strict=True):
            if c.plan.variant.has_state:
                c.grad_state = state


def run_together(model: ReadyModel, plan: Plan, chunks: list[RowChunk]) -> torch.Tensor:
    """All steps for the chunks of one request; -> final x (n, 2) on the device.

    Every chunk sits at the same position with the same plan, so the step's parameters are one
    broadcast row and x, the noise and the gradient state are single tensors: `advance`'s
    arithmetic without its per-chunk work, which dominated small requests and GPU steps.
    """
    table = torch.tensor(plan.rows, device=model.device)  # (num_steps, 8), one row per k
    x = torch.cat([c.draw() for c in chunks])
    gpu_noise = None
    if model.device.type != "cpu":  # the chunks drew all their noise with x (RowChunk.draw)
        gpu_noise = torch.cat([c.noise for c in chunks], dim=1)
    n = x.shape[0]
    state = torch.zeros_like(x)
    for i, k in enumerate(range(plan.num_steps - 1, -1, -1)):
        row = table[k : k + 1]
        t = row[:, T_COL].long().expand(n)
        if plan.needs_gradient:
            eps, grad = model_eps(model, x, t, with_gradient=True)
            gamma, alpha = row[:, GAMMA_COL : GAMMA_COL + 1], row[:, ALPHA_COL : ALPHA_COL + 1]
            eps, g = guided_eps(eps, grad, gamma, alpha, state)
            if plan.variant.has_state:
                state = g
        else:
            eps, _ = model_eps(model, x, t, with_gradient=False)
        noise = torch.cat([c.draw() for c in chunks]) if gpu_noise is None else gpu_noise[i + 1]
        x = ddpm_step(x, eps, noise, row[:, COEF])
    return x


@dataclass(frozen=True)
class SampleResult:
    samples: np.ndarray  # (n, 2) float32; non-finite rows kept as they are
    nonfinite: int  # rows with any non-finite coordinate
    seconds: float  # wall time of the whole reverse process
    variant: str
    scale: float
    seed: int
    model: str


def count_nonfinite(samples: np.ndarray) -> int:
    return int((~np.isfinite(samples).all(axis=1)).sum())


def collect(chunks: list[RowChunk]) -> np.ndarray:
    """The finished chunks' rows, in request order, as float32 (n, 2) on the host."""
    return torch.cat([c.x for c in chunks]).cpu().numpy().astype(np.float32, copy=False)


def sample(
    model: ReadyModel,
    variant: str = "baseline",
    scale: float | None = None,
    n: int = 1000,
    seed: int = 0,
    steps: int | None = None,
) -> SampleResult:
    """Sample n points with `variant` at `scale` (its default when None) in `steps` steps (T)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    plan = make_plan(model, variant, scale, steps)
    start = time.perf_counter()
    chunks = make_chunks(plan, n, seed, model.device)
    x = run_together(model, plan, chunks)
    out = x.cpu().numpy().astype(np.float32, copy=False)  # syncs the device
    seconds = time.perf_counter() - start
    return SampleResult(
        out, count_nonfinite(out), seconds, plan.variant.name, plan.scale, seed, model.name
    )
