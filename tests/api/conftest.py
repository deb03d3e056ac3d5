"""Live servers for the API tests (helpers in tests/live_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import live_server


@pytest.fixture(scope="module")
def server(api_store: Path) -> Iterator[httpx.Client]:
    with live_server(api_store, MAX_ROWS_PER_STEP="1024", ADMIN_TOKEN="") as client:
        yield client
