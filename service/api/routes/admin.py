"""POST /admin/reload: re-read the model store and swap models without failing in-flight work."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPBearer

from service.api.errors import ApiError
from service.api.schemas import ReloadResponse, error_responses
from service.api.state import StateDep, load_registry

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


@router.post(
    "/admin/reload",
    response_model=None,  # documented by responses[200]; the handler's dict is sent as is
    # documents the bearer scheme (Swagger UI's Authorize button); _authorize checks it
    dependencies=[Depends(HTTPBearer(auto_error=False))],
    responses={200: {"model": ReloadResponse}, **error_responses(401, 404, 413)},
)
async def reload(request: Request, state: StateDep) -> dict:
    """Load new or changed checkpoints, retire removed ones; unchanged models keep running.

    Returns at once: a retired model finishes its in-flight requests on the old weights (each
    ends by its deadline at the latest) and then leaves; `draining` names those still busy."""
    _authorize(request, state)
    async with state.reload_lock:
        old = state.registry
        new = await load_registry(state, old)
        state.registry = new
        state.ready = True
        retired = {n for n, s in old.models.items() if new.models.get(n) is not s}
        old.retire(retired)
    return {
        "models": sorted(new.models),
        "loaded": sorted(n for n in new.models if n not in old.models or n in retired),
        "retired": sorted(retired),
        "draining": sorted(n for n in retired if old.models[n].batcher.draining),
        "unavailable": new.failures,
    }
