"""One denoising step for any set of row chunks: `advance`, the only reverse loop body.

Rows live in chunks (`RowChunk`, at most CHUNK_ROWS rows of one request). `advance` runs one
network evaluation for any set of chunks, each at its own stage, from any mix of requests,
guiders and samplers: the service's step-level batcher calls it once per step, and the offline
`sample()` (core/offline.py) calls it until its chunks are done, so both give the same numbers
(tests check bit-equality).

A step groups its rows by what their guiders declare (core/guiders/base.py), never by name:
rows taking the density head's gradient share one forward and one backward pass, every other
row one forward, Density Guidance's rows their own autograd passes chunk by chunk; the rows
whose guider asks for a reference at this evaluation one more forward per reference model
(the null class, or each guide model). Then each guider's `combine` runs once on its rows and
each sampler's update once on its rows.

Reproducibility: each chunk draws its initial x and every step's noise from its own generator
seeded by (seed, chunk index), so its numbers never depend on what ran beside it or when.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.core.chunks import CHUNK_ROWS, RowChunk, chunk_seed, chunk_sizes, make_chunks
from service.core.density_guidance import rescale_latent
from service.core.guiders.base import GuidedRows, Pass, Reference
from service.core.model import ReadyModel
from service.core.passes import eps_and_divergence, model_eps
from service.core.plan_columns import ACTIVE_COL, COEF, LABEL_COL, T_COL

# the chunks' names, for callers that step them
__all__ = ["CHUNK_ROWS", "RowChunk", "advance", "chunk_seed", "chunk_sizes", "make_chunks"]


@dataclass
class _Group:
    """Consecutive chunks of one main pass, guider and activity: rows [start, stop)."""

    chunks: list[RowChunk]
    start: int
    stop: int
    active: bool


def _order(c: RowChunk) -> tuple[int, str, bool, str]:
    plan = c.plan
    active = plan.guider.reference is not None and plan.stages[c.position][ACTIVE_COL] != 0.0
    return (plan.main, plan.guider.name, active, plan.sampler.name)


def _groups_of(ordered: list[RowChunk], keys: list[tuple]) -> list[_Group]:
    groups: list[_Group] = []
    start, previous = 0, None
    for c, key in zip(ordered, keys, strict=True):
        if groups and key[:3] == previous:
            groups[-1].chunks.append(c)
            groups[-1].stop += c.rows
        else:
            groups.append(_Group([c], start, start + c.rows, key[2]))
        previous = key[:3]
        start += c.rows
    return groups


def advance(model: ReadyModel, chunks: list[RowChunk]) -> None:
    """Run one network evaluation for every chunk, each at its own stage, in batched passes."""
    keys = [_order(c) for c in chunks]
    if len(chunks) > 1:
        pairs = sorted(zip(keys, range(len(chunks)), strict=True))
        ordered, keys = [chunks[i] for _, i in pairs], [k for k, _ in pairs]
    else:
        ordered = chunks
    for c in ordered:
        if c.x is None:
            _start(model, c)
    sizes = [c.rows for c in ordered]
    total = sum(sizes)
    first = ordered[0]
    if len(ordered) == 1 or all(
        c.plan is first.plan and c.position == first.position for c in ordered
    ):  # one request at one stage (the offline path): one row of parameters, broadcast
        per_row = first.plan.table[first.position : first.position + 1].expand(total, -1)
        t_uniform = int(first.plan.stages[first.position][T_COL])
        label_uniform = int(first.plan.stages[first.position][LABEL_COL])
    else:
        per_row = _gather_rows(ordered, sizes, total, model.device)
        t_uniform = label_uniform = None
    x = torch.cat([c.x for c in ordered]) if len(ordered) > 1 else first.x
    t = per_row[:, T_COL].long()
    labels = per_row[:, LABEL_COL].long() if model.class_table is not None else None
    row_labels = None if label_uniform is not None or labels is None else labels
    groups = _groups_of(ordered, keys)

    # the main passes, in Pass order: the head's gradient, plain forwards, divergences
    passes = [c.plan.main for c in ordered]
    n_head = sum(s for s, p in zip(sizes, passes, strict=True) if p == Pass.HEAD_GRADIENT)
    n_forward = sum(s for s, p in zip(sizes, passes, strict=True) if p == Pass.FORWARD)
    eps_parts, head_grad, divergence = [], None, None
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
    if n_head + n_forward < total:  # eps and its divergence, a chunk at a time
        divs, start = [], n_head + n_forward
        for c in ordered[len(ordered) - sum(1 for p in passes if p == Pass.DIVERGENCE) :]:
            part = slice(start, start + c.rows)
            eps, div = eps_and_divergence(model, x[part], t[part])
            eps_parts.append(eps)
            divs.append(div)
            start += c.rows
        divergence = torch.cat(divs) if len(divs) > 1 else divs[0]
    eps = torch.cat(eps_parts) if len(eps_parts) > 1 else eps_parts[0]
    reference = _references(model, groups, x, t, labels, t_uniform)

    parts = []
    for g in groups:
        guider, part = g.chunks[0].plan.guider, slice(g.start, g.stop)
        if guider.combine is None or (guider.reference is not None and not g.active):
            parts.append(eps[part])  # the identity: no guidance at this evaluation
            continue
        rows = GuidedRows(
            model,
            x[part],
            eps[part],
            t[part],
            per_row[part],
            g.chunks[0].plan.names,
            _gather_state(g.chunks, guider.state_width, x),
            g.chunks,
            None if reference is None else reference[part],
            head_grad[part] if g.chunks[0].plan.main == Pass.HEAD_GRADIENT else None,
            None
            if divergence is None
            else divergence[g.start - n_head - n_forward :][: g.stop - g.start],
        )
        guided, state = guider.combine(rows)
        parts.append(guided)
        if guider.state_width and state is not None:
            for c, s in zip(g.chunks, state.split([c.rows for c in g.chunks]), strict=True):
                c.guider_state = s
    eps = torch.cat(parts) if len(parts) > 1 else parts[0]
    if any(c.preview for c in ordered):
        _predict_x0(model, ordered, x, eps, t)
    start = 0
    for run in _runs(ordered):  # consecutive chunks of one sampler
        smp, rows = run[0].plan.sampler, sum(c.rows for c in run)
        part = slice(start, start + rows)
        noise = torch.cat([c.draw() for c in run]) if smp.stochastic else None
        state = _gather_sampler_state(run, smp.state_width, x)
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


def _start(model: ReadyModel, c: RowChunk) -> None:
    """Draw a chunk's initial x; a guider may set its norm (Prior and Density Guidance) and
    start its per-chunk state."""
    c.x = c.draw()
    if c.plan.start_norm is not None:
        c.x = rescale_latent(c.x, c.plan.start_norm)
    if c.plan.guider.start is not None:
        c.plan.guider.start(model, c.plan, c)


def _runs(ordered: list[RowChunk]) -> list[list[RowChunk]]:
    runs: list[list[RowChunk]] = []
    for c in ordered:
        if runs and runs[-1][0].plan.sampler is c.plan.sampler:
            runs[-1].append(c)
        else:
            runs.append([c])
    return runs


def _references(
    model: ReadyModel,
    groups: list[_Group],
    x: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor | None,
    t_uniform: int | None,
) -> torch.Tensor | None:
    """The reference predictions of the active groups' rows (zeros elsewhere), one pass per
    reference model: the model at its null class, or each guide at the rows' classes."""
    wanted: dict[int, tuple[ReadyModel, Reference, list[tuple[int, int]]]] = {}
    for g in groups:
        kind = g.chunks[0].plan.guider.reference
        if kind is None or not g.active:
            continue
        start = g.start
        for c in g.chunks:
            ref = c.plan.guide if kind is Reference.GUIDE else model
            wanted.setdefault(id(ref), (ref, kind, []))[2].append((start, c.rows))
            start += c.rows
    if not wanted:
        return None
    out = x.new_zeros(x.shape)
    for ref, kind, spans in wanted.values():
        if len(spans) == 1:
            rows: slice | torch.Tensor = slice(spans[0][0], spans[0][0] + spans[0][1])
        else:
            rows = torch.cat([torch.arange(s, s + n, device=x.device) for s, n in spans])
        if kind is Reference.UNCONDITIONAL:  # the same network, every row the null class
            ref_labels, label_uniform = None, model.null_label
        else:  # a guide, each row its own class
            ref_labels, label_uniform = (None if labels is None else labels[rows]), None
        out[rows] = model_eps(ref, x[rows], t[rows], False, t_uniform, ref_labels, label_uniform)[0]
    return out


def _gather_state(chunks: list[RowChunk], width: int, like: torch.Tensor) -> torch.Tensor:
    """The guider state of `chunks`' rows: (rows, width), zeros where a chunk has none."""
    rows = sum(c.rows for c in chunks)
    if not width:
        return like.new_zeros(rows, 0)
    if len(chunks) == 1 and chunks[0].guider_state is not None:
        return chunks[0].guider_state
    return torch.cat(
        [
            like.new_zeros(c.rows, width) if c.guider_state is None else c.guider_state
            for c in chunks
        ]
    )


def _gather_sampler_state(run: list[RowChunk], width: int, like: torch.Tensor) -> torch.Tensor:
    rows = sum(c.rows for c in run)
    if not width:
        return like.new_zeros(rows, 0)
    return torch.cat(
        [like.new_zeros(c.rows, width) if c.sampler_state is None else c.sampler_state for c in run]
    )
