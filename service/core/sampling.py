"""The reverse process, guided or not, with any registered sampler (core/samplers.py).

Rows live in chunks (`RowChunk`, at most CHUNK_ROWS rows of one request). `advance` runs one
network evaluation for any set of chunks, each at its own stage, from any mix of requests,
variants and samplers; it is the only reverse loop body: the service's step-level batcher calls
it once per step, and the offline `sample()` calls it until its chunks are done, so both give
the same numbers (tests check bit-equality).

Reproducibility: each chunk draws its initial x and every step's noise from its own generator
seeded by (seed, chunk index), so its numbers never depend on what ran beside it or when.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from service.core import class_guidance as cg
from service.core import density_guidance as dg
from service.core.errors import RequestError
from service.core.guidance import (
    Variant,
    get_variant,
    guided_eps,
    resolve_gradient,
    resolve_scale,
)
from service.core.model import ReadyModel
from service.core.network import infer, infer_with_density_gradient
from service.core.samplers import COEF_WIDTH, Sampler, get_sampler, resolve_params

CHUNK_ROWS = 256
# CPU GEMM kernels for fewer than ~12 rows round differently from the large-batch kernels;
# padding every forward to at least this many rows keeps a row's result independent of its batch.
MIN_FORWARD_ROWS = 16
# Per-evaluation parameters of a plan, one row of floats each (see Plan.rows): the sampler's
# coefficients, then the network's t, gamma_t, the gradient EMA weight, (density) the
# log-density a row should have after the evaluation, (conditional models) the class index,
# and (cfg, autoguidance) the guidance weight w, 1 where the row runs unguided.
COEF = slice(0, COEF_WIDTH)
T_COL, GAMMA_COL, ALPHA_COL, TARGET_COL, LABEL_COL, W_COL = range(COEF_WIDTH, COEF_WIDTH + 6)
# The lanes of one evaluation, in batch order: rows with the density head's backward pass, rows
# guided by the model's own score (forward only), rows of cfg and autoguidance (a forward, and
# a second one for their reference), unguided rows, and rows of Density Guidance (eps and its
# divergence by autograd, one chunk at a time so that a row's numbers depend on its chunk
# alone). The guided lanes, and the forward-only lanes, are each one slice.
HEAD, SCORE, REFERENCED, PLAIN, DENSITY = range(5)
MAX_CACHED_PLANS = 1024


def chunk_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for chunk `index` of a request seeded with `seed`."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def chunk_sizes(n: int, chunk_rows: int = CHUNK_ROWS) -> list[int]:
    return [min(chunk_rows, n - start) for start in range(0, n, chunk_rows)]


@dataclass(frozen=True)
class Plan:
    """Everything fixed about a request's reverse process, one row of floats per evaluation.

    `rows[p]` serves the evaluation with p evaluations after it (a chunk's `position` counts
    down from `evaluations - 1` to 0), so for ddpm rows[k] is schedule position k."""

    variant: Variant
    scale: float
    sampler: Sampler
    sampler_params: dict[str, float]
    steps: int  # S, positions on the (respaced) schedule
    rows: list[list[float]]  # rows[p] = [COEF_WIDTH coefficients, t, gamma_t, alpha, target]
    gradient: str | None = None  # the paper's variants: head, score or energy
    target_log_p: float | None = None  # density: the final log-density asked for, if absolute
    prior_norm: float | None = None  # density, prior: every start's norm
    # `rows` as a tensor on the model's device: a step gathers its chunks' rows from it by
    # index instead of building a tensor from nested Python floats (~3 us a chunk a step)
    table: torch.Tensor | None = field(default=None, repr=False, compare=False)
    label: int | None = None  # a conditional model's class; None: the null class
    guide: ReadyModel | None = field(default=None, repr=False, compare=False)  # autoguidance
    interval: tuple[float, float] | None = None  # cfg, autoguidance: [sigma_lo, sigma_hi]

    @property
    def evaluations(self) -> int:
        """Network evaluations (NFE): the stages a chunk runs."""
        return len(self.rows)

    @cached_property  # read for every chunk of every step: the batcher's per-chunk host work
    def lane(self) -> int:
        if self.variant.kind == "density":
            return DENSITY
        if self.variant.kind in cg.REFERENCED_KINDS:
            return REFERENCED
        if self.gradient == "head":
            return HEAD
        return SCORE if self.gradient else PLAIN

    @property
    def needs_gradient(self) -> bool:
        """Whether an evaluation costs more than one forward: a backward pass, or cfg's and
        autoguidance's second forward (the batcher's cost model)."""
        return self.lane in (HEAD, DENSITY, REFERENCED)

    @property
    def guided_evaluations(self) -> int:
        """cfg, autoguidance: evaluations that run the reference too (w != 1 there)."""
        if self.lane != REFERENCED:
            return 0
        return sum(1 for row in self.rows if row[W_COL] != 1.0)

    @property
    def final_target(self) -> float | None:
        """density: the log-density every row is steered to (its last evaluation's target)."""
        return self.rows[0][TARGET_COL] if self.variant.kind == "density" else None


def make_plan(
    model: ReadyModel,
    variant: str,
    scale: float | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    eta: float | None = None,
    gradient: str | None = None,
    target_log_p: float | None = None,
    label: int | str | None = None,
    guide: ReadyModel | None = None,
    interval: tuple[float, float] | None = None,
) -> Plan:
    """Check the request against the model and precompute its per-evaluation parameters.

    `label`, `guide`, `interval`: class-conditional models (core/class_guidance.py): the
    class (index or name), autoguidance's guide model, the sigma range guidance applies in.

    Plans are cached on the model (up to MAX_CACHED_PLANS), so a server's event loop does no
    tensor work for a repeated request shape. The first `density` plan of a (model, steps)
    runs the calibration (core/density_guidance.py, about a second): callers on an event loop
    run it in a thread.
    """
    v = get_variant(variant)
    used_gradient = resolve_gradient(v, model.objective, model.name, gradient)
    used_scale = resolve_scale(v, scale)
    smp = get_sampler(sampler or v.default_sampler)
    params = resolve_params(smp, {"eta": eta})
    _check_kind(v, smp, params, target_log_p)
    used_label = cg.resolve_label(model, v, label)
    interval = None if interval is None else (float(interval[0]), float(interval[1]))
    cg.check_reference(model, v, guide, interval)
    key = (v.name, used_scale, steps, smp.name, tuple(sorted(params.items())), used_gradient)
    key += (target_log_p, used_label, None if guide is None else guide.id, interval)
    if key in model.plans:
        return model.plans[key]
    s = model.schedule_for(steps)
    t, coef = smp.stages(s, params)  # evaluation order
    gamma = v.gamma(t, s.num_timesteps, used_scale)
    alpha = v.smoothing or 0.0
    target = torch.zeros(len(t))
    if v.kind == "density":
        table = dg.calibrate(model, steps)
        quantile = None if target_log_p is not None else used_scale
        median = dg.chi2_norm_quantile(0.5)
        start = dg.start_log_density(model, torch.tensor([[median, 0.0]]), int(t[0]))
        path = dg.target_path(table, quantile, target_log_p, float(start[0]))
        target = torch.from_numpy(path[dg.step_of_evaluation(len(t))])
    label_index = model.null_label if used_label is None else used_label
    weight = torch.ones(len(t), dtype=torch.float64)
    if v.kind in cg.REFERENCED_KINDS:
        weight = cg.weight_column(model, t, used_scale, interval)
    columns = torch.cat(
        [
            coef.float(),
            t.float()[:, None],
            gamma.float()[:, None],
            torch.full((len(t), 1), alpha),
            target.float()[:, None],
            torch.full((len(t), 1), float(label_index)),
            weight.float()[:, None],
        ],
        dim=1,
    ).flip(0)  # rows[p]: p evaluations left after it
    norm = None
    if v.kind in ("density", "prior"):  # density starts every row at the median norm
        norm = dg.chi2_norm_quantile(used_scale if v.kind == "prior" else 0.5)
    plan = Plan(
        v,
        used_scale,
        smp,
        params,
        s.num_steps,
        columns.tolist(),
        used_gradient,
        target_log_p,
        norm,
        columns.contiguous().to(model.device),
        used_label,
        guide,
        interval,
    )
    if len(model.plans) < MAX_CACHED_PLANS:
        model.plans[key] = plan
    return plan


def _check_kind(
    v: Variant, smp: Sampler, params: dict[str, float], target_log_p: float | None
) -> None:
    """density runs on Heun's probability-flow steps; prior on any deterministic sampler."""
    if v.samplers is not None and smp.name not in v.samplers:
        raise RequestError(
            "sampler",
            f"variant {v.name!r} does not run with sampler {smp.name!r}",
            " or ".join(v.samplers),
        )
    if v.kind == "prior" and smp.name == "ddim" and params.get("eta") != 0.0:
        raise RequestError("eta", "variant 'prior' needs a deterministic sampler", "eta 0")
    if target_log_p is not None:
        if v.kind != "density":
            raise RequestError(
                "target_log_p", "target_log_p applies only to variant 'density'", "omitted"
            )
        if not math.isfinite(target_log_p):
            raise RequestError("target_log_p", "target_log_p must be finite", "a finite number")


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
    tracking: dg.Tracking | None = field(default=None, repr=False)  # density's log p
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
    model: ReadyModel,
    x: torch.Tensor,
    t: torch.Tensor,
    with_gradient: bool,
    t_uniform: int | None = None,
    labels: torch.Tensor | None = None,
    label_uniform: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Noise prediction (B, 2) and, if asked, grad_x log p_hat (B, 2), in blocks of rows.

    The gradient comes from a hand-written backward sweep: no autograd graph, one pass.
    `t_uniform`: every row's timestep, when they share one; its time row is then broadcast
    instead of gathered per row (a (B, hidden) copy a step, 3% of an offline run).
    Conditional models: each row's class `labels` (B,), or `label_uniform` for all (default
    the null class); its share of the first layer is added to the time's.
    """
    xp, tp, rows = _pad(x, t, model.block_rows if model.pad_blocks else 0)
    if t_uniform is not None:
        t_hidden = model.time_table[t_uniform : t_uniform + 1]
    else:
        t_hidden = model.time_table[tp]
    if model.class_table is not None:
        if labels is None:
            label = model.null_label if label_uniform is None else label_uniform
            t_hidden = t_hidden + model.class_table[label : label + 1]
        else:
            extra = len(xp) - rows
            lp = (
                torch.cat([labels, labels.new_full((extra,), model.null_label)])
                if extra
                else labels
            )
            t_hidden = t_hidden + model.class_table[lp]
    broadcast = t_hidden.shape[0] == 1  # one time (and class) row for every row
    block = model.block_rows or len(xp)
    eps_parts, grad_parts = [], []
    for start in range(0, len(xp), block):
        # a short tail block is merged into the previous one (>= MIN_FORWARD_ROWS, see _pad)
        if not model.pad_blocks and 0 < len(xp) - start - block < MIN_FORWARD_ROWS:
            block = len(xp) - start
        xs = xp[start : start + block]
        hs = t_hidden if broadcast else t_hidden[start : start + block]
        if model.energy_coef is not None:  # eps = -grad f + (sigma_t / v_t) x: one backward
            _, grad_f = infer_with_density_gradient(model.weights, xs, hs)
            coef = model.energy_coef[tp[start : start + block]]
            eps_parts.append(torch.addcmul(grad_f.neg_(), xs, coef[:, None]))
        elif with_gradient:
            out, grad = infer_with_density_gradient(model.weights, xs, hs)
            grad_parts.append(grad)
            eps_parts.append(out[:, :2])
        else:
            eps_parts.append(infer(model.weights, xs, hs)[:, :2])
        if start + block >= len(xp):
            break
    eps = eps_parts[0] if len(eps_parts) == 1 else torch.cat(eps_parts)
    if not with_gradient:
        return eps[:rows], None
    grad = grad_parts[0] if len(grad_parts) == 1 else torch.cat(grad_parts)
    return eps[:rows], grad[:rows]


def advance(model: ReadyModel, chunks: list[RowChunk]) -> None:
    """Run one network evaluation for every chunk, each at its own stage, in batched passes.

    Rows guided by the density head share one forward + one backward pass; rows guided by their
    score and unguided rows one forward, no graph; Density Guidance rows their own passes (see
    the lanes above). Then each sampler's update runs on its rows (one slice per run).
    """
    ordered = sorted(chunks, key=_lane_order) if len(chunks) > 1 else chunks
    lanes = [c.plan.lane for c in ordered]
    sizes = [c.rows for c in ordered]
    rows_in = [0] * 5
    for lane, rows in zip(lanes, sizes, strict=True):
        rows_in[lane] += rows
    n_head, n_guided, n_forward = rows_in[HEAD], rows_in[HEAD] + rows_in[SCORE], rows_in[PLAIN]
    n_forward += rows_in[SCORE] + rows_in[REFERENCED]
    guided = ordered[: bisect.bisect_left(lanes, REFERENCED)]  # sorted by lane: HEAD, SCORE first
    total = sum(sizes)
    dev = model.device
    for c in ordered:
        if c.x is None:
            _start(model, c)
    if len(ordered) == 1 or all(
        c.plan is ordered[0].plan and c.position == ordered[0].position for c in ordered
    ):  # one request at one stage (the offline path): one row of parameters, broadcast
        first = ordered[0]
        per_row = first.plan.table[first.position : first.position + 1].expand(total, -1)
        t_uniform = int(first.plan.rows[first.position][T_COL])
        label_uniform = int(first.plan.rows[first.position][LABEL_COL])
    else:
        per_row = _gather_rows(ordered, sizes, total, dev)
        t_uniform = label_uniform = None
    x = torch.cat([c.x for c in ordered]) if len(ordered) > 1 else ordered[0].x
    t = per_row[:, T_COL].long()
    labels = per_row[:, LABEL_COL].long() if model.class_table is not None else None
    row_labels = None if label_uniform is not None or labels is None else labels  # per row
    eps_parts, head_grad, new_state = [], None, None
    if n_head:
        head_labels = None if row_labels is None else row_labels[:n_head]
        eps, head_grad = model_eps(
            model, x[:n_head], t[:n_head], True, t_uniform, head_labels, label_uniform
        )
        eps_parts.append(eps)
    if n_forward:
        part = slice(n_head, n_head + n_forward)
        part_labels = None if row_labels is None else row_labels[part]
        eps_parts.append(
            model_eps(model, x[part], t[part], False, t_uniform, part_labels, label_uniform)[0]
        )
    start = n_head + n_forward
    for c in ordered[bisect.bisect_left(lanes, DENSITY) :]:
        part = slice(start, start + c.rows)
        target = per_row[part, TARGET_COL]
        eps_parts.append(
            dg.density_eps(
                model, x[part], t[part], per_row[part, COEF], target, c.tracking, c.position == 0
            )
        )
        start += c.rows
    eps = torch.cat(eps_parts) if len(eps_parts) > 1 else eps_parts[0]
    if rows_in[REFERENCED]:
        _reference(model, ordered, lanes, n_guided, x, eps, t, labels, per_row, t_uniform)
    if n_guided:
        grads = [head_grad] if n_head else []
        if n_guided > n_head:  # the model's score, -eps / sigma_t: no extra pass
            sigma = model.schedule.sqrt_one_minus_alpha_bar.float()[t[n_head:n_guided], None]
            grads.append(-eps[n_head:n_guided] / sigma)
        grad = torch.cat(grads) if len(grads) > 1 else grads[0]
        previous = torch.cat(
            [x.new_zeros(c.rows, 2) if c.grad_state is None else c.grad_state for c in guided]
        )
        gamma = per_row[:n_guided, GAMMA_COL : GAMMA_COL + 1]
        alpha = per_row[:n_guided, ALPHA_COL : ALPHA_COL + 1]
        guided_part, new_state = guided_eps(eps[:n_guided], grad, gamma, alpha, previous)
        eps = guided_part if n_guided == total else torch.cat([guided_part, eps[n_guided:]])
    if any(c.preview for c in ordered):
        _predict_x0(model, ordered, x, eps, t)
    start = 0
    for run in _runs(ordered):  # consecutive chunks of one sampler
        smp, rows = run[0].plan.sampler, sum(c.rows for c in run)
        part = slice(start, start + rows)
        noise = torch.cat([c.draw() for c in run]) if smp.stochastic else None
        state = _gather_state(run, smp.state_width, x)
        x_next, state = smp.update(x[part], eps[part], noise, per_row[part, COEF], state)
        run_sizes = [c.rows for c in run]
        if len(run) == 1:
            run[0].x, run[0].position = x_next, run[0].position - 1
            if smp.state_width:
                run[0].sampler_state = state
        else:
            for c, xs in zip(run, x_next.split(run_sizes), strict=True):
                c.x = xs
                c.position -= 1
            if smp.state_width:
                for c, st in zip(run, state.split(run_sizes), strict=True):
                    c.sampler_state = st
        start += rows
    if new_state is not None:
        for c, state in zip(guided, new_state.split(sizes[: len(guided)]), strict=True):
            if c.plan.variant.has_state:
                c.grad_state = state


def _reference(
    model: ReadyModel,
    ordered: list[RowChunk],
    lanes: list[int],
    first_row: int,
    x: torch.Tensor,
    eps: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor | None,
    per_row: torch.Tensor,
    t_uniform: int | None,
) -> None:
    """cfg and autoguidance: the chunks whose weight is not 1 at this evaluation get their
    reference pass and eps_ref + w (eps - eps_ref) (core/class_guidance.py)."""
    pending, start = [], first_row
    for c in ordered[bisect.bisect_left(lanes, REFERENCED) : bisect.bisect_left(lanes, PLAIN)]:
        if c.plan.rows[c.position][W_COL] != 1.0:
            pending.append((start, c))
        start += c.rows
    if pending:
        weights = per_row[:, W_COL]
        cg.apply_reference(model, pending, x, eps, t, labels, weights, t_uniform, model_eps)


def _gather_rows(
    ordered: list[RowChunk], sizes: list[int], total: int, dev: torch.device
) -> torch.Tensor:
    """Each row's plan row (total, width): the chunks' rows gathered from their plans' tables."""
    offsets: dict[int, int] = {}
    tables, index, stacked = [], [], 0
    for c in ordered:
        key = id(c.plan)
        if key not in offsets:
            offsets[key], stacked = stacked, stacked + len(c.plan.table)
            tables.append(c.plan.table)
        index.append(offsets[key] + c.position)
    table = tables[0] if len(tables) == 1 else torch.cat(tables)
    params = table[torch.tensor(index, device=dev)]
    repeats = torch.tensor(sizes, device=dev)
    return params.repeat_interleave(repeats, dim=0, output_size=total)


def _lane_order(c: RowChunk) -> tuple[int, str]:
    return (c.plan.lane, c.plan.sampler.name)


def _start(model: ReadyModel, c: RowChunk) -> None:
    """Draw a chunk's initial x; Prior and Density Guidance set its norm, and Density Guidance
    starts tracking its log-density."""
    c.x = c.draw()
    if c.plan.prior_norm is not None:
        c.x = dg.rescale_latent(c.x, c.plan.prior_norm)
    if c.plan.lane == DENSITY:
        t = int(c.plan.rows[c.position][T_COL])
        c.tracking = dg.Tracking(dg.start_log_density(model, c.x, t))


def _predict_x0(
    model: ReadyModel, ordered: list[RowChunk], x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor
) -> None:
    """x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t), with the eps the sampler steps on."""
    sched, start = model.schedule, 0
    for c in ordered:
        if c.preview:
            part = slice(start, start + c.rows)
            tt = t[part]
            sigma = sched.sqrt_one_minus_alpha_bar.float()[tt, None]
            c.x0 = (x[part] - sigma * eps[part]) / sched.sqrt_alpha_bar.float()[tt, None]
        start += c.rows


def _runs(ordered: list[RowChunk]) -> list[list[RowChunk]]:
    runs: list[list[RowChunk]] = []
    for c in ordered:
        if runs and runs[-1][0].plan.sampler is c.plan.sampler:
            runs[-1].append(c)
        else:
            runs.append([c])
    return runs


def _gather_state(run: list[RowChunk], width: int, like: torch.Tensor) -> torch.Tensor:
    rows = sum(c.rows for c in run)
    if not width:
        return like.new_zeros(rows, 0)
    return torch.cat(
        [like.new_zeros(c.rows, width) if c.sampler_state is None else c.sampler_state for c in run]
    )


@dataclass(frozen=True)
class SampleResult:
    samples: np.ndarray  # (n, 2) float32; non-finite rows kept as they are
    nonfinite: int  # rows with any non-finite coordinate
    seconds: float  # wall time of the whole reverse process
    variant: str
    scale: float
    seed: int
    model: str
    sampler: str = "ddpm"
    steps: int = 0  # S
    evaluations: int = 0  # NFE
    gradient: str | None = None
    # density: each row's log-density tracked along its path (nats), and the target
    log_p: np.ndarray | None = None
    target_log_p: float | None = None
    label: int | None = None  # a conditional model's class (None: unconditional)


def count_nonfinite(samples: np.ndarray) -> int:
    return int((~np.isfinite(samples).all(axis=1)).sum())


def collect(chunks: list[RowChunk]) -> np.ndarray:
    """The finished chunks' rows, in request order, as float32 (n, 2) on the host."""
    return torch.cat([c.x for c in chunks]).cpu().numpy().astype(np.float32, copy=False)


def collect_log_p(chunks: list[RowChunk]) -> np.ndarray | None:
    """Density Guidance's tracked log-densities in request order (float64), else None."""
    if chunks[0].tracking is None:
        return None
    return torch.cat([c.tracking.log_p for c in chunks]).cpu().numpy().astype(np.float64)


def sample(
    model: ReadyModel,
    variant: str = "baseline",
    scale: float | None = None,
    n: int = 1000,
    seed: int = 0,
    steps: int | None = None,
    sampler: str | None = None,
    eta: float | None = None,
    gradient: str | None = None,
    target_log_p: float | None = None,
    on_evaluation: Callable[[int, int], None] | None = None,
    label: int | str | None = None,
    guide: ReadyModel | None = None,
    interval: tuple[float, float] | None = None,
) -> SampleResult:
    """Sample n points with `variant` at `scale` (its default when None) in `steps` steps (T)
    of `sampler`: the batcher's own loop body (`advance`), all chunks at once."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    plan = make_plan(
        model, variant, scale, steps, sampler, eta, gradient, target_log_p, label, guide, interval
    )
    start = time.perf_counter()
    chunks = make_chunks(plan, n, seed, model.device)
    done = 0
    while not chunks[0].done:
        advance(model, chunks)
        done += 1
        if on_evaluation is not None:  # (evaluations done, of) e.g. a progress bar
            on_evaluation(done, plan.evaluations)
    out = collect(chunks)  # syncs the device
    seconds = time.perf_counter() - start
    return SampleResult(
        out,
        count_nonfinite(out),
        seconds,
        plan.variant.name,
        plan.scale,
        seed,
        model.name,
        plan.sampler.name,
        plan.steps,
        plan.evaluations,
        plan.gradient,
        collect_log_p(chunks),
        plan.final_target,
        plan.label,
    )
