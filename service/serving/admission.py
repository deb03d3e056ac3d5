"""Whole-server admission: take a request only if it, and everything already taken, can finish
before every one of their deadlines.

All models share one engine thread, so the work ahead of a request is the work of every model,
not of its own queue. Work is predicted per model by a cost model (a per-step overhead plus
`Cost.baseline` or `Cost.guided` seconds a row, measured at warm-up) times the model's running
scale (measured step time over the cost model's), which absorbs what the cost model misses: a
warm-up on a busy machine, an event loop that takes CPU from the steps in a storm.

Why the rule below keeps every promise: the step loop is work-conserving, so with no further
arrivals every admitted request is done by `now + W`, where W is the remaining work. A request
is admitted only if `now + W + w <= now + SAFETY * slack` for the smallest slack (deadline minus
now) among the requests in hand and itself; afterwards `now + W` stays constant while work runs
(W falls one second per second), so the invariant holds for every admitted request until the
next admission checks it again. Under fair sharing a later request slows an earlier one, which
is exactly why the check covers the requests already in hand, not only the newcomer.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass

# Admit only what fits in this fraction of the tightest slack: the VM moves step times by up
# to 30%, and the correction factor needs a few steps to see it.
SAFETY = 0.8
CORRECTION_RANGE = (0.05, 20.0)  # wide: a warm-up measured on a busy machine can be far off


@dataclass(frozen=True)
class Cost:
    """A model's step time: `step` seconds a step plus `baseline` or `guided` seconds a row."""

    baseline: float
    guided: float
    step: float

    def per_row(self, guided: bool) -> float:
        return self.guided if guided else self.baseline

    def request(self, rows: int, steps: int, guided: bool, rows_per_step: int) -> float:
        """Predicted seconds of a request run alone; the per-step overhead is counted as if it
        ran alone, which overstates small requests batched together (the safe side)."""
        blocks = math.ceil(rows / rows_per_step)
        return steps * (rows * self.per_row(guided) + blocks * self.step)


# Before a model is measured (warm-up off): the 2-core CPU's figures, rounded up.
DEFAULT_COST = Cost(baseline=2e-6, guided=5e-6, step=5e-4)


class Overloaded(Exception):
    def __init__(self, retry_after_s: int, message: str):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooLong(Exception):
    """The request alone cannot finish inside its deadline on this server."""

    def __init__(
        self,
        compute_s: float,
        deadline_s: float,
        advice: str = "raise deadline_s or lower n or steps",
    ):
        self.needed_s = compute_s / SAFETY  # the deadline it would be admitted with, idle
        super().__init__(
            f"this request needs about {compute_s:.1f} s of compute on this server, so a "
            f"deadline of at least {self.needed_s:.0f} s; its deadline is {deadline_s:g} s: "
            + advice
        )


@dataclass(eq=False)
class Ticket:
    """One admitted request: its model's key, cost-model seconds left, and its deadline."""

    key: int
    work: float  # in the cost model's seconds; times its model's scale -> predicted seconds
    deadline: float  # time.monotonic()


class Admission:
    """Thread-safe: the event loop admits, the engine thread charges steps and releases.

    Work is kept in each model's cost-model seconds and turned into predicted seconds with the
    model's current scale (measured step time over the cost model's, smoothed), so when steps
    slow down, the work already admitted is predicted slower too, not only the newcomer's.
    """

    def __init__(self, enabled: bool = True, max_retry_after_s: int = 600) -> None:
        self.enabled = enabled  # off: every request is admitted, the work is still counted
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self._tickets: set[Ticket] = set()
        self._scale: dict[int, float] = {}  # model key -> measured / cost model
        self.max_retry_after_s = max_retry_after_s

    def _ahead(self) -> float:
        return sum(t.work * self._scale.get(t.key, 1.0) for t in self._tickets)

    @property
    def work_ahead_s(self) -> float:
        """Predicted seconds until everything admitted is done."""
        with self._lock:
            return self._ahead()

    def admit(self, key: int, work: float, deadline_s: float, now: float | None = None) -> Ticket:
        """A ticket for `work` cost-model seconds of model `key`, due in `deadline_s`;
        or Overloaded / TooLong."""
        now = time.monotonic() if now is None else now
        with self._lock:
            own = work * self._scale.get(key, 1.0)
            if self.enabled and own > SAFETY * deadline_s:  # would be refused even when idle
                raise TooLong(own, deadline_s)
            ahead = self._ahead()
            # a ticket past its deadline is about to be reaped by the engine: its slack does
            # not count, or one late request would refuse everything until then
            slack = min(
                [deadline_s, *(t.deadline - now for t in self._tickets if t.deadline > now)]
            )
            finish = ahead + own
            if self.enabled and finish > SAFETY * max(slack, 0.0):
                # the work ahead falls by r in r seconds; the newcomer fits once
                # ahead - r + own <= SAFETY * deadline_s, and the others' slack allows it
                wait = max(1.0, finish - SAFETY * deadline_s, ahead - SAFETY * slack)
                # spread over [wait, 2 wait]: every client refused in a storm is told about the
                # same wait, and a herd that returns at once is refused again, costing CPU
                # that the admitted work needs (measured: docs/BENCHMARKS.md, overload storm)
                wait *= 1 + self._rng.random()
                retry = int(min(self.max_retry_after_s, math.ceil(wait)))
                raise Overloaded(
                    retry,
                    f"the server has about {ahead:.1f} s of work ahead; this request "
                    f"(about {own:.1f} s) could not finish inside the deadlines in hand",
                )
            ticket = Ticket(key, work, now + deadline_s)
            self._tickets.add(ticket)
            return ticket

    def charge(
        self, key: int, spent: list[tuple[Ticket, float]], predicted: float, seconds: float
    ) -> None:
        """After a step of model `key`: each ticket's cost-model seconds spent, the step's
        cost-model prediction and its measured time."""
        with self._lock:
            for ticket, work in spent:
                ticket.work = max(0.0, ticket.work - work)
            if predicted > 0:
                ratio = min(max(seconds / predicted, CORRECTION_RANGE[0]), CORRECTION_RANGE[1])
                self._scale[key] = 0.9 * self._scale.get(key, 1.0) + 0.1 * ratio

    def release(self, ticket: Ticket | None) -> None:
        """The request is over (done, failed or cancelled): its remaining work leaves."""
        if ticket is None:
            return
        with self._lock:
            self._tickets.discard(ticket)
            ticket.work = 0.0
