"""GET /: the playground page (one static file, no build step, nothing fetched elsewhere)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["playground"])


@cache
def _page() -> str:
    return (files("service.api") / "ui" / "playground.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
async def playground() -> HTMLResponse:
    """A page to pick a variant, scale and sampler, watch it denoise, and compare A with B."""
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})
