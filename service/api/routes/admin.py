"""POST /admin/reload: re-read the model store and swap models without failing in-flight work."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, Request

from service.api.errors import ApiError
from service.api.registry import build_registry
from service.api.state import StateDep

router = APIRouter(tags=["operations"])


def _authorize(request: Request, state: StateDep) -> None:
    token = state.settings.admin_token
    if token is None:
        raise ApiError(404, "Not Found")  # admin endpoints do not exist without ADMIN_TOKEN
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        given.encode(), token.get_secret_value().encode()
    ):
        raise ApiError(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})


@router.post("/admin/reload")
async def reload(request: Request, state: StateDep) -> dict:
    """Load new or changed checkpoints, retire removed ones; unchanged models keep running."""
    _authorize(request, state)
    async with state.reload_lock:
        old = state.registry
        new = await asyncio.wrap_future(
            state.engine.call(
                lambda: build_registry(
                    state.settings, state.metrics, state.engine, state.device, old
                )
            )
        )
        state.registry = new
        state.ready = True
        retired = {n for n, s in old.models.items() if new.models.get(n) is not s}
        # Retired schedulers finish the requests they hold, then stop.
        await asyncio.to_thread(old.stop, retired)
    return {
        "models": sorted(new.models),
        "loaded": sorted(n for n in new.models if n not in old.models or n in retired),
        "retired": sorted(retired),
        "unavailable": new.failures,
    }
