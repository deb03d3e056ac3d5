"""A dataset's exact density at every noise level: its classes' component families, mixed.

log p_t(x) = logsumexp over every term of every class (each class's terms carry its prior),
grad_x log p_t(x) = sum of the families' shares weighted by the terms' responsibilities, and on
the labelled datasets p_t(x | c) (the class's terms alone) and the exact posterior p(c | x_t).
Rows of one call may each ask for a class or for the marginal (`labels`, with `num_classes`
meaning "none"), as a class-conditional model's rows do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from service.core.exact.families import Family

BLOCK_ROWS = 1024


@dataclass(frozen=True)
class ExactDensity:
    dataset: str
    classes: tuple[tuple[Family, ...], ...]  # per class, its families (one class: unlabelled)
    log_prior: torch.Tensor  # (C,) log p(c)
    description: str  # what the density is, and its quadrature if any (the manifest shows it)

    @property
    def num_classes(self) -> int:
        """0 for an unlabelled dataset (one class of everything)."""
        return len(self.classes) if len(self.classes) > 1 else 0

    @property
    def device(self) -> torch.device:
        return self.log_prior.device

    def to(self, device: torch.device | str) -> ExactDensity:
        classes = tuple(tuple(f.to(device) for f in fams) for fams in self.classes)
        return ExactDensity(self.dataset, classes, self.log_prior.to(device), self.description)

    def _families(self):
        return [(c, f) for c, fams in enumerate(self.classes) for f in fams]

    def _terms(self, x, a, s, labels, scored: bool = False):
        """Every term (B, K) with its class prior, terms of the other classes masked out for a
        row that names a class; with `scored`, each family's score function and its columns."""
        parts, spans, owner, start = [], [], [], 0
        for c, family in self._families():
            if scored:
                t, grad = family.scored(x, a, s)
            else:
                t, grad = family.terms(x, a, s), None
            t = t + self.log_prior[c]
            parts.append(t)
            spans.append((grad, slice(start, start + t.shape[1])))
            owner.append(torch.full((t.shape[1],), c, device=x.device))
            start += t.shape[1]
        terms = torch.cat(parts, 1)
        if labels is not None and self.num_classes:
            owner_ = torch.cat(owner)
            own = (owner_[None, :] == labels[:, None]) | (labels >= self.num_classes)[:, None]
            terms = torch.where(own, terms, -math.inf)
        return terms, spans

    def _inputs(self, x, a, s, labels):
        x = x.to(torch.float64)
        rows = len(x)
        a = torch.as_tensor(a, dtype=torch.float64).cpu().expand(rows)
        s = torch.as_tensor(s, dtype=torch.float64).cpu().expand(rows)
        if labels is not None:
            labels = torch.as_tensor(labels, device=x.device).expand(rows)
        return x, a, s, labels

    def _grouped(self, fn, x, a, s, labels):
        """fn(x, a, s, labels) with scalar a and s, on each group of rows sharing a noise
        level: a row's value depends on its own inputs alone."""
        x, a, s, labels = self._inputs(x, a, s, labels)
        if bool((a == a[0]).all() and (s == s[0]).all()):  # one level: the usual step
            return self._blocks(fn, x, float(a[0]), float(s[0]), labels)
        levels, which = torch.unique(torch.stack([a, s], 1), dim=0, return_inverse=True)
        if len(levels) == 1:
            return fn(x, float(levels[0, 0]), float(levels[0, 1]), labels)
        out = None
        for i, (ai, si) in enumerate(levels.tolist()):
            rows = (which == i).nonzero()[:, 0].to(x.device)
            part = self._blocks(fn, x[rows], ai, si, None if labels is None else labels[rows])
            if out is None:
                out = part.new_empty((len(x), *part.shape[1:]))
            out[rows] = part
        return out

    @staticmethod
    def _blocks(fn, x, a, s, labels):
        """fn over blocks of BLOCK_ROWS rows: the (rows, terms) temporaries stay in cache."""
        if len(x) <= 2 * BLOCK_ROWS:
            return fn(x, a, s, labels)
        parts = [
            fn(x[i : i + BLOCK_ROWS], a, s, None if labels is None else labels[i : i + BLOCK_ROWS])
            for i in range(0, len(x), BLOCK_ROWS)
        ]
        return torch.cat(parts)

    def log_p(self, x, a, s, labels=None) -> torch.Tensor:
        """log p_t(x) (B,), float64, for x_t = a x_0 + s eps (a, s per row or one for all);
        s = 0 is the data's own density. With `labels`, log p_t(x | c) per row (C: the
        marginal)."""
        return self._grouped(self._log_p, x, a, s, labels)

    def score(self, x, a, s, labels=None) -> torch.Tensor:
        """grad_x log p_t(x) (B, 2), float64 (s > 0); with `labels`, of p_t(x | c)."""
        return self._grouped(self._score, x, a, s, labels)

    def log_posterior(self, x, a, s) -> torch.Tensor:
        """log p(c | x_t) (B, C), float64: the exact class posterior (labelled datasets)."""
        return self._grouped(self._log_posterior, x, a, s, None)

    def _log_p(self, x, a, s, labels):
        terms, _ = self._terms(x, a, s, labels)
        out = torch.logsumexp(terms, 1)
        if labels is not None and self.num_classes:  # p(x | c) = p(x, c) / p(c)
            named = labels < self.num_classes
            prior = self.log_prior[labels.clamp(max=self.num_classes - 1)]
            out = out - torch.where(named, prior, 0.0)
        return out

    def _score(self, x, a, s, labels):
        terms, spans = self._terms(x, a, s, labels, scored=True)
        resp = torch.softmax(terms, 1).nan_to_num(0.0)
        grad = torch.zeros_like(x)
        for share, cols in spans:
            grad = grad + share(resp[:, cols])
        return grad

    def _log_posterior(self, x, a, s, labels):
        per_class = []
        for c, fams in enumerate(self.classes):
            t = torch.cat([f.terms(x, a, s) for f in fams], 1)
            per_class.append(torch.logsumexp(t, 1) + self.log_prior[c])
        joint = torch.stack(per_class, 1)
        return joint - torch.logsumexp(joint, 1, keepdim=True)
