"""Opening the sweeps database at start-up and running this replica's sweep runner."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket

from service.api.state import AppState
from service.api.sweep_cells import evaluate_cell
from service.sweeps.runner import RunnerOptions, SweepRunner
from service.sweeps.store import StoreError, SweepStore, database_url, describe_url

log = logging.getLogger(__name__)


def replica_id(configured: str | None) -> str:
    return configured or f"{socket.gethostname()[:50]}-{os.getpid()}"


async def start_sweeps(state: AppState) -> asyncio.Task | None:
    """Open (and migrate) the database and start the runner; a database that cannot be opened
    or written leaves the server up, its /readyz 503 naming the database and why."""
    s = state.settings
    url = database_url(s.database_url and s.database_url.get_secret_value(), s.data_dir)
    try:
        store = await asyncio.to_thread(SweepStore, url, replica_id(s.replica_id))
        if store.sqlite:  # one replica per file: every running cell was the dead process's
            reclaimed = await asyncio.to_thread(store.reclaim_all)
            if reclaimed:
                log.info("resuming %d sweep cells that were running at the last stop", reclaimed)
    except StoreError as e:
        log.error("%s", e)
        state.sweeps_error = str(e)
        return None
    options = RunnerOptions(concurrency=s.sweep_concurrency, lease_s=s.sweep_lease_s)
    runner = SweepRunner(
        store,
        functools.partial(evaluate_cell, state),
        options,
        ready=lambda: state.ready and bool(state.registry.models),
        on_cell=state.metrics.on_sweep_cell,
        on_in_hand=state.metrics.sweeps_in_hand.set,
    )
    state.metrics.sweep_cells_in_flight.set_function(lambda: len(runner.inflight))
    state.sweeps = runner
    log.info("sweeps in %s, replica %s", describe_url(url), store.owner)
    return asyncio.create_task(runner.run())


async def stop_sweeps(state: AppState, task: asyncio.Task | None) -> None:
    if task is None:
        return
    task.cancel()  # the runner hands its cells back (pending) on the way out
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if state.sweeps is not None:
        state.sweeps.store.close()
