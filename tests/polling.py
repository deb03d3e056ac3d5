"""Waiting in tests: poll with a deadline, never sleep for a guessed time or loop unbounded."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.02):
    """Poll `predicate` until it returns something true, and return that; fail naming `what`
    once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(every)
    return result
