"""The network passes a denoising step can ask for (core/guiders/base.py's `Pass`).

`model_eps` is the fast path: the model's noise prediction, in blocks of rows, with the density
head's input gradient if asked (a hand-written backward sweep, no autograd graph). Conditional
models add each row's class share to the first layer beside the time's. `eps_and_divergence`
is Density Guidance's: eps and its exact 2D divergence by autograd.
"""

from __future__ import annotations

import torch

from service.core.energy import energy_eps
from service.core.model import ReadyModel
from service.core.network import infer, infer_with_density_gradient
from service.core.oracle import oracle_eps, oracle_eps_and_divergence

# CPU GEMM kernels for fewer than ~12 rows round differently from the large-batch kernels;
# padding every forward to at least this many rows keeps a row's result independent of its batch.
MIN_FORWARD_ROWS = 16


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
    if model.is_oracle:
        return oracle_eps(model, x, t, with_gradient, labels, label_uniform)
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


def eps_and_divergence(
    model: ReadyModel, x: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """eps (B, 2) and div_x eps (B,), exact: two input-gradient passes through the network
    (for an energy model, eps is itself a gradient, so these are second derivatives)."""
    if model.is_oracle:
        return oracle_eps_and_divergence(model, x, t)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        if model.is_energy:
            eps, _ = energy_eps(model.network, model.schedule, x, t, create_graph=True)
        else:
            eps = model.network(x, t)[:, :2]
        div = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        for i in range(2):
            (grad,) = torch.autograd.grad(eps[:, i].sum(), x, retain_graph=i == 0)
            div = div + grad[:, i]
    return eps.detach(), div.detach()
