"""Component families of the exact densities: each noised by the forward process in closed form
or by a quadrature of stated accuracy (docs/DESIGN.md#10-ground-truth).

x_t = a x_0 + s eps with a = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t), per row. A family
holds K components of one class and gives, for rows x (B, 2) with their a and s (B,),
- `terms(x, a, s)` (B, K'): the log of each weighted term of p_t(x) (K' = K, or K times the
  quadrature nodes), whose logsumexp is the family's share of log p_t(x);
- `grad(x, a, s, resp)` (B, 2): sum_k resp_k grad_x log term_k, with resp the terms'
  responsibilities (softmax over every term of the density): the score's share.
s = 0 is the clean data's own density (a = 1). Everything runs in float64: a row's numbers are
elementwise in its own values and reductions over its own terms, so they do not depend on the
rows beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Gaussians:
    """Axis-aligned Gaussians: means (K, 2), variances (K, 2), log weights (K,).

    `panels`: None for a fixed set of components. Otherwise the components are the nodes of a
    quadrature along a curve, `curve(panels)` -> (means, variances, log weights), and the
    number of panels follows the noise (PANELS_PER_WIDTH panels per component width along the
    curve, clamped to [min_panels, max_panels]): a broad p_t needs few nodes."""

    means: torch.Tensor
    variances: torch.Tensor
    log_weights: torch.Tensor
    curve: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
    curve_speed: float = 0.0  # the curve's largest |d mean / du| (u in [0, pi])
    min_panels: int = 4
    max_panels: int = 0

    def components(self, a: float, s: float):
        if self.curve is None:
            return self.means, self.variances, self.log_weights
        width = math.sqrt(a * a * float(self.variances.min()) + s * s) / (a * self.curve_speed)
        panels = min(
            self.max_panels, max(self.min_panels, math.ceil(PANELS_PER_WIDTH * math.pi / width))
        )
        return self.curve(panels)

    def _moments(self, x, a, s):
        means, variances, log_w = self.components(a, s)
        means = means.to(x.device)
        var = a * a * variances.to(x.device) + s * s
        inv = 1 / var
        log_c = log_w.to(x.device) - 0.5 * (var.log() + LOG_2PI).sum(-1)
        d0 = x[:, 0:1] - a * means[:, 0]
        d1 = x[:, 1:2] - a * means[:, 1]
        return d0, d1, inv, log_c

    def terms(self, x, a, s):
        d0, d1, inv, log_c = self._moments(x, a, s)
        return log_c - 0.5 * (d0 * d0 * inv[:, 0] + d1 * d1 * inv[:, 1])

    def grad(self, x, a, s, resp):
        d0, d1, inv, _ = self._moments(x, a, s)
        return -torch.stack([(resp * d0 * inv[:, 0]).sum(1), (resp * d1 * inv[:, 1]).sum(1)], 1)

    def scored(self, x, a, s):
        return self.terms(x, a, s), lambda resp: self.grad(x, a, s, resp)

    def to(self, device):
        return replace(
            self,
            means=self.means.to(device),
            variances=self.variances.to(device),
            log_weights=self.log_weights.to(device),
        )


PANELS_PER_WIDTH = 0.2


def log_diff_ndtr(upper: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """log(Phi(upper) - Phi(lower)) for upper >= lower, accurate in either tail."""
    flip = lower > 0  # both in the right tail: Phi(u) - Phi(l) = Phi(-l) - Phi(-u)
    hi = torch.where(flip, -lower, upper)
    lo = torch.where(flip, -upper, lower)
    log_hi = torch.special.log_ndtr(hi)
    gap = (torch.special.log_ndtr(lo) - log_hi).clamp(max=-1e-300)
    return log_hi + torch.log(-torch.expm1(gap))


def log_normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z * z - 0.5 * LOG_2PI


@dataclass(frozen=True)
class Boxes:
    """Uniform rectangles [lo, hi] (K, 2), log weights (K,): p_t is a product of normal-CDF
    differences per axis, closed form."""

    lo: torch.Tensor
    hi: torch.Tensor
    log_weights: torch.Tensor

    def _z(self, x, a, s):
        upper = (x[:, None, :] - a * self.lo[None]) / s
        lower = (x[:, None, :] - a * self.hi[None]) / s
        return upper, lower

    def terms(self, x, a, s):
        log_width = (a * (self.hi - self.lo)).log()  # (K, 2)
        if s == 0:  # the data itself: the indicator over the box's area
            inside = ((x[:, None, :] >= self.lo) & (x[:, None, :] <= self.hi)).all(-1)
            return self.log_weights + torch.where(inside, -log_width.sum(-1), -math.inf)
        upper, lower = self._z(x, a, s)
        return self.log_weights + (log_diff_ndtr(upper, lower) - log_width).sum(-1)

    def grad(self, x, a, s, resp):
        upper, lower = self._z(x, a, s)
        log_mass = log_diff_ndtr(upper, lower)
        per_axis = (log_normal_pdf(upper) - log_mass).exp() - (
            log_normal_pdf(lower) - log_mass
        ).exp()
        return (resp[:, :, None] * per_axis).sum(1) / s

    def scored(self, x, a, s):
        return self.terms(x, a, s), lambda resp: self.grad(x, a, s, resp)

    def to(self, device):
        return Boxes(self.lo.to(device), self.hi.to(device), self.log_weights.to(device))


# The ring's quadrature: over the radius r, the integrand is a Gaussian bump of width s around
# r = d (times a slowly varying Bessel factor), so RING_NODES Gauss-Legendre nodes cover the
# window of RING_WINDOW s either side of its peak, clipped to [0, a radius]; what lies outside is
# below exp(-RING_WINDOW^2 / 2) of the peak. tests/core/test_exact.py bounds the error against
# a 2,000-node rule over the whole radius.
RING_NODES = 24
RING_WINDOW = 7.0
RING_TAIL = 30.0
RING_NEAREST = 3
RING_MIN_NODES = 6
RING_MARGIN = 10.0  # (10 s)^2 / 2 s^2 = 50 nats


@dataclass(frozen=True)
class Rings:
    """Points `centres` (K, 2) blurred by a kernel of radius uniform on [0, radius] and a uniform
    direction (the circle dataset's), log weights (K,). The clean density is
    1 / (2 pi radius |x - c|) inside the disc; noised, each ring of radius r convolves to
    exp(-(d - r)^2 / 2 s^2) i0e(d r / s^2) / (2 pi s^2) (i0e(z) = exp(-z) I0(z)), averaged over
    r in [0, a radius]."""

    centres: torch.Tensor
    radius: float
    log_weights: torch.Tensor

    def _nodes(self, d, a, s, nodes, window):
        """Per (row, component): radii (B, K, N) and log weights (B, K, N) of the windowed
        rule, normalised to the average over [0, a radius]."""
        top = a * self.radius
        peak = d.clamp(max=top)
        # beyond the disc the bump is cut at its edge and falls like
        # exp(-(d - top) (top - r) / s^2):
        # its width shrinks to s^2 / (d - top), and RING_TAIL such widths hold all but exp(-30)
        half = s * torch.clamp(RING_TAIL * s / ((d - top).clamp(min=0.0) + s), max=window)
        lo = (peak - half).clamp(min=0.0)
        hi = (peak + half).clamp(max=top)
        xi, w = np.polynomial.legendre.leggauss(nodes)
        xi = torch.tensor((xi + 1) / 2, dtype=d.dtype, device=d.device)
        w = torch.tensor(w / 2, dtype=d.dtype, device=d.device)
        span = (hi - lo)[..., None]
        r = lo[..., None] + span * xi
        return r, (span * w / top).log()

    def _log_g(self, d, a, s, nodes, window):
        r, log_w = self._nodes(d, a, s, nodes, window)
        dd = d[..., None]
        z = dd * r / (s * s)
        i0e = torch.special.i0e(z)
        log_g = log_w - (dd - r) ** 2 / (2 * s * s) + i0e.log()
        return log_g - math.log(2 * math.pi * s * s), r, z, i0e

    def _offsets(self, x, a):
        offset = x[:, None, :] - a * self.centres[None]  # (B, K, 2)
        return offset, offset.norm(dim=-1)

    def terms(self, x, a, s, nodes=RING_NODES, window=RING_WINDOW):
        if s == 0:
            d = self._offsets(x, a)[1]
            inside = d < self.radius
            clean = torch.where(inside, -(2 * math.pi * self.radius * d).log(), -math.inf)
            return self.log_weights + clean
        return self._scored(x, a, s, nodes, window, grad=False)[0]

    def scored(self, x, a, s):
        """terms, and the score's share as a function of resp, from one pass over the nodes."""
        return self._scored(x, a, s, RING_NODES, RING_WINDOW, grad=True)

    def _scored(self, x, a, s, nodes, window, grad: bool):
        # a kernel narrower than the window needs fewer nodes: span / s sets the resolution
        nodes = max(
            RING_MIN_NODES, min(nodes, math.ceil(nodes * a * self.radius / (2 * window * s)))
        )
        """Each row on its nearest RING_NEAREST components where the rest lie so much farther
        (by RING_MARGIN noise sd plus the kernel's radius) that each of their terms is below
        exp(-50) of the nearest's; their terms are then -inf. Other rows on every component."""
        offset, d = self._offsets(x, a)
        k = len(self.centres)
        if k <= RING_NEAREST:
            return self._on(offset, d, a, s, nodes, window, grad)
        nearest, index = d.topk(RING_NEAREST + 1, dim=1, largest=False)
        far = nearest[:, -1] - nearest[:, 0] > RING_MARGIN * s + a * self.radius
        index = index[:, :RING_NEAREST]
        rows = far.nonzero()[:, 0]
        rest = (~far).nonzero()[:, 0]
        terms = d.new_full(d.shape, -math.inf)
        shares = []
        if len(rows):
            sub = index[rows]
            t, g = self._on(
                offset[rows].gather(1, sub[..., None].expand(-1, -1, 2)),
                d[rows].gather(1, sub),
                a,
                s,
                nodes,
                window,
                grad,
                self.log_weights[sub],
            )
            terms[rows[:, None], sub] = t
            shares.append((rows, sub, g))
        if len(rest):
            t, g = self._on(offset[rest], d[rest], a, s, nodes, window, grad)
            terms[rest] = t
            shares.append((rest, None, g))
        if not grad:
            return terms, None

        def share(resp):
            out = x.new_zeros(len(x), 2)
            for r, sub, g in shares:
                out[r] = g(resp[r] if sub is None else resp[r[:, None], sub])
            return out

        return terms, share

    def _on(self, offset, d, a, s, nodes, window, grad, log_weights=None):
        log_weights = self.log_weights if log_weights is None else log_weights
        log_g, r, z, i0e = self._log_g(d, a, s, nodes, window)
        node_terms = torch.logsumexp(log_g, -1)
        if not grad:
            return log_weights + node_terms, None

        def share(resp):
            within = (log_g - node_terms[..., None]).exp()
            # d/dd log g = -d / s^2 + (r / s^2) I1(z) / I0(z); over d: I1(z) / (z I0(z)) -> 1/2
            safe = z.clamp_min(1e-8)
            ratio = torch.where(z > 1e-8, torch.special.i1e(safe) / (safe * i0e), 0.5)
            per_d = (within * (r * r * ratio)).sum(-1) / (s * s) ** 2 - 1 / (s * s)  # (B, K)
            return (resp[:, :, None] * per_d[:, :, None] * offset).sum(1)

        return log_weights + node_terms, share

    def grad(self, x, a, s, resp):
        """resp (B, K): the components' responsibilities; within one, its nodes' shares."""
        return self.scored(x, a, s)[1](resp)

    def to(self, device):
        return Rings(self.centres.to(device), self.radius, self.log_weights.to(device))


Family = Gaussians | Boxes | Rings
