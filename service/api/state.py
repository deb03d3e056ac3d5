"""What the app holds between requests, and the dependency that hands it to routes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated

import torch
from fastapi import Depends, Request

from service.api.metrics import Metrics
from service.api.settings import Settings
from service.serving.admission import Admission
from service.serving.engine import Engine
from service.serving.registry import Registry


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    device: torch.device
    engine: Engine
    registry: Registry = field(default_factory=Registry)
    ready: bool = False
    load_error: str | None = None
    started_at: float = field(default_factory=time.time)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    admission: Admission = field(default_factory=Admission)

    def __post_init__(self) -> None:
        self.admission.enabled = self.settings.admission == "deadline"


async def get_state(request: Request) -> AppState:
    return request.app.state.dgs


# async: a plain def would send every request through the thread pool
StateDep = Annotated[AppState, Depends(get_state)]
