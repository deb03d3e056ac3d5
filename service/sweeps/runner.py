"""The loop each replica runs: claim cells, evaluate them concurrently, commit each as it
finishes, renew the leases of the ones in hand.

Cells are claimed only while fewer than `concurrency` are in hand, so a replica never holds
more than it is working on (the rest stay pending for other replicas), and a server that is
refused work by its own admission hands the cell back and waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from service.sweeps.store import Claimed, SweepStore

log = logging.getLogger(__name__)


class CellFailed(Exception):
    """The cell cannot be evaluated (bad for this model, non-finite, model gone): recorded
    as failed with this reason; the sweep goes on."""


class Busy(Exception):
    """The server cannot take the cell now: it goes back to pending, and the runner waits."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"busy for {retry_after_s} s")
        self.retry_after_s = retry_after_s


COUNT_EVERY_S = 2.0  # the sweeps-in-hand gauge's refresh

Evaluate = Callable[[Claimed], Awaitable[dict[str, Any]]]


@dataclass
class RunnerOptions:
    concurrency: int = 4
    lease_s: float = 30.0
    idle_s: float = 1.0  # how often an idle replica looks for cells another replica added


@dataclass
class SweepRunner:
    store: SweepStore
    evaluate: Evaluate
    options: RunnerOptions = field(default_factory=RunnerOptions)
    ready: Callable[[], bool] = lambda: True
    on_cell: Callable[[str], None] = lambda outcome: None  # "done" | "failed"
    on_in_hand: Callable[[int], None] = lambda sweeps: None  # sweeps running, every replica's
    inflight: dict[int, tuple[Claimed, asyncio.Task]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # one thread for every database call: SQLite wants a single writer, and the event loop
        # never waits on the database
        self._db = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sweeps-db")
        self._wake = asyncio.Event()
        self._not_before = 0.0  # monotonic: after a Busy, no claim before this

    async def db(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: fn(*args, **kwargs))

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        renew_every = self.options.lease_s / 3
        renewed = counted = time.monotonic()
        try:
            while True:
                claimed = []
                free = self.options.concurrency - len(self.inflight)
                if free > 0 and self.ready() and time.monotonic() >= self._not_before:
                    try:
                        claimed = await self.db(self.store.claim, free, self.options.lease_s)
                    except Exception:
                        log.exception("claiming sweep cells failed; retrying")
                for cell in claimed:
                    task = asyncio.create_task(self._run_cell(cell))
                    self.inflight[cell.id] = (cell, task)
                if time.monotonic() - renewed >= renew_every:
                    await self._renew()
                    renewed = time.monotonic()
                if time.monotonic() - counted >= COUNT_EVERY_S:
                    await self._count()
                    counted = time.monotonic()
                if not claimed:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.options.idle_s)
        finally:
            await self._stop()

    async def _renew(self) -> None:
        ids = list(self.inflight)
        try:
            kept = await self.db(self.store.renew, ids, self.options.lease_s)
        except Exception:
            log.exception("renewing sweep leases failed")
            return
        for cell_id in set(ids) - kept:  # cancelled, or taken over: stop spending on it
            entry = self.inflight.pop(cell_id, None)
            if entry is not None:
                entry[1].cancel()

    async def _count(self) -> None:
        try:
            self.on_in_hand((await self.db(self.store.in_hand))[0])
        except Exception:
            log.exception("counting the sweeps in hand failed")

    def cancel_sweep(self, sweep_id: str) -> int:
        """Stop this replica's cells of a cancelled sweep now (their rows leave the batcher)."""
        gone = [i for i, (c, _) in self.inflight.items() if c.sweep_id == sweep_id]
        for cell_id in gone:
            self.inflight.pop(cell_id)[1].cancel()
        return len(gone)

    async def _run_cell(self, cell: Claimed) -> None:
        started = time.perf_counter()
        outcome: dict[str, Any]
        try:
            result = await self.evaluate(cell)
            outcome = {"result": result, "model": result.get("model")}
        except Busy as e:
            self._not_before = time.monotonic() + e.retry_after_s
            self.inflight.pop(cell.id, None)
            await self.db(self.store.release, [cell.id])
            self.wake()
            return
        except CellFailed as e:
            outcome = {"error": str(e)[:1000]}
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not stop the sweep, nor the runner
            log.exception("sweep cell %s failed", cell.id)
            outcome = {"error": f"{type(e).__name__}: {e}"[:1000]}
        seconds = time.perf_counter() - started
        try:
            committed = await self.db(self.store.finish, cell.id, seconds=seconds, **outcome)
        except Exception:
            log.exception("recording sweep cell %s failed; its lease will lapse", cell.id)
            committed = False
        finally:
            self.inflight.pop(cell.id, None)
            self.wake()
        if committed:
            self.on_cell("failed" if "error" in outcome else "done")

    async def _stop(self) -> None:
        """Shutdown: cancel the cells in hand and hand them back, so a restart (or another
        replica) takes them at once."""
        entries = list(self.inflight.values())
        self.inflight.clear()
        for _, task in entries:
            task.cancel()
        for _, task in entries:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.db(self.store.release, [c.id for c, _ in entries])
        self._db.shutdown(wait=False)
