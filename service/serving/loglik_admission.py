"""Admission for the likelihood solver: take a solve only if it, and every solve ahead of it,
can finish before its deadline; otherwise refuse at once, with a Retry-After from the work ahead.

The solver runs one solve at a time on its own thread, first come first served, so a solve
finishes after the work ahead of it plus its own. A solve's seconds are predicted from its
points by a cost model, `calls * call + points * evaluations_per_point * row` (a batched
evaluation's fixed cost plus each point's share; core/pointwise_rk23.py). The evaluations a
point takes are learnt per model from the solves that finished, the calls follow from them
(`expected_calls`), and the whole is multiplied by a running scale (measured seconds over
predicted), as in the sampler's admission (serving/admission.py), which absorbs a busy
machine or a faster device. A queued or running solve counts its prediction less the time
it has run.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass

from service.serving.admission import CORRECTION_RANGE, SAFETY, Overloaded, TooLong


@dataclass(frozen=True)
class SolveCost:
    """Seconds a batched evaluation (forward and two input-gradient passes) costs: `call` for
    the call itself plus `row` for each point in it."""

    call: float
    row: float


# Measured on the 2-core CPU VM, one torch thread, moons-plain-improved (docs/BENCHMARKS.md).
DEFAULT_SOLVE_COST = SolveCost(call=1.0e-3, row=1.7e-5)
# What a model's first solve is predicted with, before any of its solves finished: the shipped
# moons model's held-out points at rtol = atol = 1e-5 take ~2,400 evaluations each.
DEFAULT_EVALUATIONS_PER_POINT = 2_500.0
# A solve takes as many calls as its hardest point takes evaluations, and the hardest of more
# points is harder: on moons-plain-improved's held-out points (`model_log_likelihood` called
# directly, 2-core CPU VM) the hardest of 200 took 1.7 times the mean (3,995 against 2,362),
# of 2,000 2.0 times (4,979 against 2,434: docs/BENCHMARKS.md), close to 1 + 0.3 log10(points).
HARDEST_SPREAD = 0.3
SMOOTHING = 0.3  # weight of the newest solve in the learnt figures


def expected_calls(points: int, evaluations_per_point: float) -> float:
    return evaluations_per_point * (1 + HARDEST_SPREAD * math.log10(max(points, 1)))


@dataclass(eq=False)
class SolveTicket:
    model: str
    points: int
    predicted_s: float
    deadline: float | None = None  # time.monotonic(): the solve is stopped there
    started: float | None = None  # time.monotonic() once the solver took it


class LoglikAdmission:
    """Thread-safe: the event loop admits and releases, the solver thread marks the start."""

    def __init__(
        self,
        enabled: bool = True,
        cost: SolveCost = DEFAULT_SOLVE_COST,
        max_evaluations: int | None = None,
        max_retry_after_s: int = 600,
    ) -> None:
        self.enabled = enabled  # off: every solve is taken; the work is still counted
        self.cost = cost
        self.max_evaluations = max_evaluations
        self.max_retry_after_s = max_retry_after_s
        self._lock = threading.Lock()
        self._tickets: set[SolveTicket] = set()
        self._per_point: dict[str, float] = {}  # model -> evaluations a point, learnt
        self._scale = 1.0
        self._rng = random.Random(0)

    def predict_s(self, model: str, points: int) -> float:
        """Predicted seconds of a solve of `points` points of `model`, run alone."""
        with self._lock:
            return self._predict(model, points)

    def _predict(self, model: str, points: int) -> float:
        per_point = self._per_point.get(model, DEFAULT_EVALUATIONS_PER_POINT)
        calls = expected_calls(points, per_point)
        if self.max_evaluations is not None:  # the cap bounds both
            per_point = min(per_point, self.max_evaluations)
            calls = min(calls, self.max_evaluations)
        return self._scale * (calls * self.cost.call + points * per_point * self.cost.row)

    def _left(self, ticket: SolveTicket, now: float) -> float:
        ran = 0.0 if ticket.started is None else now - ticket.started
        left = ticket.predicted_s - ran
        if left > 0:
            return left
        # past its prediction (far points, a busy machine): guess it runs as long again, but
        # never past its deadline, where it is stopped
        return ran if ticket.deadline is None else min(ran, max(ticket.deadline - now, 0.0))

    @property
    def work_ahead_s(self) -> float:
        """Predicted seconds until every solve taken is done."""
        return self.work_ahead_at(time.monotonic())

    def work_ahead_at(self, now: float) -> float:
        with self._lock:
            return sum(self._left(t, now) for t in self._tickets)

    @property
    def solves_in_hand(self) -> int:
        with self._lock:
            return len(self._tickets)

    def admit(
        self,
        model: str,
        points: int,
        deadline_s: float | None,
        refuse: bool = True,
        now: float | None = None,
    ) -> SolveTicket:
        """A ticket for a solve; Overloaded (503) when the work ahead would make it miss
        `deadline_s`, TooLong when it would miss it even alone. `refuse` False takes it
        whatever the work ahead (the deadline still ends it): an /evaluate whose samples are
        drawn already."""
        now = time.monotonic() if now is None else now
        with self._lock:
            own = self._predict(model, points)
            if self.enabled and refuse and deadline_s is not None:
                if own > SAFETY * deadline_s:
                    raise TooLong(own, deadline_s, "raise deadline_s or send fewer points")
                ahead = sum(self._left(t, now) for t in self._tickets)
                if ahead + own > SAFETY * deadline_s:
                    # the work ahead falls by one second a second: it fits after the excess;
                    # spread over [wait, 2 wait] so that refused clients do not return at once
                    wait = max(1.0, ahead + own - SAFETY * deadline_s)
                    wait *= 1 + self._rng.random()
                    raise Overloaded(
                        int(min(self.max_retry_after_s, math.ceil(wait))),
                        f"the likelihood solver has about {ahead:.1f} s of work ahead; this "
                        f"solve (about {own:.1f} s) could not finish inside its deadline",
                    )
            deadline = None if deadline_s is None else now + deadline_s
            ticket = SolveTicket(model, points, own, deadline)
            self._tickets.add(ticket)
            return ticket

    def start(self, ticket: SolveTicket, now: float | None = None) -> None:
        """The solver took the ticket's solve (its thread calls this first)."""
        with self._lock:
            ticket.started = time.monotonic() if now is None else now

    def release(self, ticket: SolveTicket) -> None:
        """The solve is over, or will never run; idempotent."""
        with self._lock:
            self._tickets.discard(ticket)

    def learn(
        self,
        ticket: SolveTicket,
        calls: int,
        evaluations: float,
        seconds: float,
        typical: float | None = None,
    ) -> None:
        """A finished solve's calls, point-evaluations in all and seconds, and `typical`, the
        evaluations of its median point (default: the mean): the model's figure moves toward
        the median, so a few far points do not make every later request look expensive (their
        cost still counts in the running scale, measured against the calls they took)."""
        if ticket.points <= 0 or calls <= 0:
            return
        per_point = evaluations / ticket.points if typical is None else typical
        with self._lock:
            a = SMOOTHING
            known = self._per_point.get(ticket.model, DEFAULT_EVALUATIONS_PER_POINT)
            self._per_point[ticket.model] = known + a * (per_point - known)
            modelled = calls * self.cost.call + evaluations * self.cost.row
            if modelled > 0 and seconds > 0:
                ratio = min(max(seconds / modelled, CORRECTION_RANGE[0]), CORRECTION_RANGE[1])
                self._scale += a * (ratio - self._scale)
