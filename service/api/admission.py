"""Whole-server admission: take a request only if it, and everything already taken, can finish
before every one of their deadlines.

All models share one engine thread, so the work ahead of a request is the work of every model,
not of its own queue. Work is kept in predicted engine-seconds: a row-step costs `Cost.baseline`
or `Cost.guided` seconds (measured per model at warm-up), and a running correction factor
(measured step time over predicted step time) absorbs what the cost model misses: per-step
overhead, a busy machine.

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
import threading
import time
from dataclasses import dataclass

# Admit only what fits in this fraction of the tightest slack: the VM moves step times by up
# to 30%, and the correction factor needs a few steps to see it.
SAFETY = 0.8
CORRECTION_RANGE = (0.1, 10.0)  # wide: a warm-up measured on a busy machine is far off


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

    def __init__(self, needed_s: float, deadline_s: float):
        super().__init__(
            f"this request needs about {needed_s:.1f} s of compute on this server; "
            f"its deadline is {deadline_s:g} s: raise deadline_s or lower n or steps"
        )
        self.needed_s = needed_s


@dataclass(eq=False)
class Ticket:
    """One admitted request's share of the work: predicted seconds left and its deadline."""

    work_s: float
    deadline: float  # time.monotonic()


class Admission:
    """Thread-safe: the event loop admits, the engine thread charges steps and releases."""

    def __init__(self, enabled: bool = True, max_retry_after_s: int = 600) -> None:
        self.enabled = enabled  # off: every request is admitted, the work is still counted
        self._lock = threading.Lock()
        self._tickets: set[Ticket] = set()
        self._work_s = 0.0  # sum of the tickets' work_s
        self._correction = 1.0  # measured step seconds / predicted
        self.max_retry_after_s = max_retry_after_s

    @property
    def work_ahead_s(self) -> float:
        """Predicted seconds until everything admitted is done, corrected."""
        return self._work_s * self._correction

    def admit(self, work_s: float, deadline_s: float, now: float | None = None) -> Ticket:
        """A ticket for `work_s` predicted seconds due in `deadline_s`, or Overloaded/TooLong."""
        now = time.monotonic() if now is None else now
        with self._lock:
            k = self._correction
            own = work_s * k
            if self.enabled and own > deadline_s:
                raise TooLong(own, deadline_s)
            slack = min([deadline_s, *(t.deadline - now for t in self._tickets)])
            finish = (self._work_s + work_s) * k
            if self.enabled and finish > SAFETY * max(slack, 0.0):
                # after r seconds W has fallen by r; the newcomer fits once
                # W*k - r + own <= SAFETY * deadline_s
                wait = max(1.0, finish - SAFETY * deadline_s, self._work_s * k - SAFETY * slack)
                retry = int(min(self.max_retry_after_s, math.ceil(wait)))
                raise Overloaded(
                    retry,
                    f"the server has about {self._work_s * k:.1f} s of work ahead; this request "
                    f"(about {own:.1f} s) could not finish inside the deadlines in hand",
                )
            ticket = Ticket(work_s, now + deadline_s)
            self._tickets.add(ticket)
            self._work_s += work_s
            return ticket

    def charge(self, spent: list[tuple[Ticket, float]], predicted_s: float, seconds: float) -> None:
        """After a step: each ticket's predicted seconds spent, and the step's measured time."""
        with self._lock:
            for ticket, work in spent:
                if ticket in self._tickets:
                    done = min(work, ticket.work_s)
                    ticket.work_s -= done
                    self._work_s -= done
            if predicted_s > 0:
                ratio = min(max(seconds / predicted_s, CORRECTION_RANGE[0]), CORRECTION_RANGE[1])
                self._correction = 0.9 * self._correction + 0.1 * ratio

    def release(self, ticket: Ticket | None) -> None:
        """The request is over (done, failed or cancelled): its remaining work leaves."""
        if ticket is None:
            return
        with self._lock:
            if ticket in self._tickets:
                self._tickets.remove(ticket)
                self._work_s -= ticket.work_s
                ticket.work_s = 0.0
            if not self._tickets:
                self._work_s = 0.0  # no float drift survives an idle moment
