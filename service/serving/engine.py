"""The engine: the one thread of the server that runs torch.

It loads and warms up models, and runs every attached model batcher (anything with the
`Stepper` methods), one denoising step each in turn. One thread, not one per model, because on
the CPU each extra thread that runs torch keeps its own OpenMP pool, and the pools fight:
measured here, a 1024 x 256 relu took 60 us from a second torch thread against 17 us from the
first, and a whole 100-step request of 16 rows 2-3x as long. The event loop does no tensor
work; it hands calls to this thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Stepper(Protocol):
    """What the engine runs: a model batcher (service.serving.batcher.ModelBatcher)."""

    name: str

    def run_once(self) -> float: ...  # one step at most; -> seconds until it wants to run again
    def fail_all(self, error: Exception) -> None: ...
    def close(self, error: Exception) -> None: ...


class Engine:
    def __init__(self, torch_threads: int | None = None) -> None:
        self.torch_threads = torch_threads
        self._cv = threading.Condition()
        self._steppers: list[Stepper] = []
        self._calls: deque[tuple[Callable[[], Any], concurrent.futures.Future]] = deque()
        self._woken = False
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)

    def start(self) -> Engine:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout)

    def close_all(self, error: Exception) -> None:
        """Shutdown: every stepper, a retired one still draining too, answers what it holds
        with `error` and leaves."""
        with self._cv:
            steppers = list(self._steppers)
        for stepper in steppers:
            stepper.close(error)

    def attach(self, stepper: Stepper) -> None:
        with self._cv:
            self._steppers.append(stepper)
            self._cv.notify_all()

    def detach(self, stepper: Stepper) -> None:
        with self._cv:
            if stepper in self._steppers:
                self._steppers.remove(stepper)

    def wake(self) -> None:
        with self._cv:
            self._woken = True
            self._cv.notify_all()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run `fn` on the engine thread (between steps); its result comes back in the future."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            self._calls.append((fn, future))
            self._cv.notify_all()
        return future

    def _loop(self) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)  # OpenMP's thread count is per thread
        wait = 0.0
        while True:
            with self._cv:
                if wait > 0 and not self._woken and not self._calls and not self._stopping:
                    self._cv.wait(None if math.isinf(wait) else wait)
                self._woken = False
                if self._stopping:
                    return
                calls = list(self._calls)
                self._calls.clear()
                steppers = list(self._steppers)
            for fn, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as e:  # handed back to the caller
                        future.set_exception(e)
            wait = math.inf
            for stepper in steppers:
                try:
                    wait = min(wait, stepper.run_once())
                except Exception as e:  # one model's failure fails its requests, not the loop
                    log.exception("step failed for %s", stepper.name)
                    stepper.fail_all(e)
                    wait = 0.0
