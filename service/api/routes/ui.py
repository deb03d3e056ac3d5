"""GET / and GET /compare: the playground and the sweeps' compare view (static files, no build
step, nothing fetched elsewhere)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["playground"])


@cache
def _page(name: str) -> str:
    return (files("service.api") / "ui" / name).read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
async def playground() -> HTMLResponse:
    """A page to pick a variant, scale and sampler, watch it denoise, and compare A with B."""
    return HTMLResponse(_page("playground.html"), headers={"Cache-Control": "no-cache"})


@router.get("/compare", response_class=HTMLResponse)
async def compare() -> HTMLResponse:
    """A sweep's configs as points: any two metrics against each other with their 95%
    intervals and the Pareto front; a click samples that config beside the data."""
    return HTMLResponse(_page("compare.html"), headers={"Cache-Control": "no-cache"})
