"""POST /sample/stream: the reverse process as Server-Sent Events, then /sample's result.

The request is validated, planned and queued exactly as /sample's, before the response starts,
so a refusal is still a plain 4xx/503/504. After that the status is 200 and a failure arrives
as an `error` event. Events (each `data` is one JSON object):

  queued    {"rows_ahead", "n", "steps", "evaluations"}  once, when the batcher takes it
  progress  {"evaluation", "evaluations", "fraction"}     every `every` evaluations
  preview   {"evaluation", "t", "x_t", "x0"}              with progress, when preview_rows > 0
  result    /sample's JSON body                           last, on success
  error     {"status", "detail"}                          last, on failure

Progress is counted in network evaluations of the whole request (rows x evaluations done over
n x NFE): with many requests in the batch its rows do not all move at once. The engine thread
only copies a few preview rows into the event; serialising happens on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import orjson
import torch
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from service.api.body_guard import require_json
from service.api.errors import ApiError, field_error
from service.api.routes.sample import record, sample_json
from service.api.schemas import StreamRequest, error_responses
from service.api.state import AppState, StateDep
from service.api.submission import Submitted, abandon, result_of, submit_job, watch_disconnect
from service.core.plan_columns import T_COL
from service.serving.job import Job

router = APIRouter(tags=["sampling"])
EVENTS = ("queued", "progress", "preview", "result", "error")
EVENTS_PER_REQUEST = 25  # the default `every`: about this many progress events


def sse(event: str, data: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def _json(obj: object) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


class _Reporter:
    """Job.on_step for one stream: from the engine thread, every `every` evaluations, puts a
    progress (and preview) event on the loop's queue."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, every: int | None, rows: int
    ):
        self.loop, self.queue, self.every, self.rows = loop, queue, every, rows
        self.next_due = every

    def __call__(self, job: Job) -> None:
        total = job.plan.evaluations
        if self.every is None:
            self.every = self.next_due = max(1, total // EVENTS_PER_REQUEST)
        done = int(job.progress * total + 1e-9)
        if done < self.next_due:
            return
        self.next_due = (done // self.every + 1) * self.every
        event = {"evaluation": done, "evaluations": total, "fraction": round(job.progress, 6)}
        shown = [c for c in job.chunks if c.preview and c.x0 is not None]
        preview = None
        if shown:
            running = [c for c in shown if not c.done] or shown
            t = int(running[0].plan.stages[running[0].position + 1][T_COL])
            preview = {
                "evaluation": done,
                "t": t,
                "x_t": torch.cat([c.x for c in shown])[: self.rows].cpu().numpy(),
                "x0": torch.cat([c.x0 for c in shown])[: self.rows].cpu().numpy(),
            }
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("progress", event, preview))


async def _events(
    request: Request, sub: Submitted, queue: asyncio.Queue, body: StreamRequest, state: AppState
):
    job = sub.job
    yield sse(
        "queued",
        _json(
            {
                "rows_ahead": sub.rows_ahead,
                "n": job.n,
                "steps": job.plan.steps,
                "evaluations": job.plan.evaluations,
            }
        ),
    )
    watcher = asyncio.create_task(watch_disconnect(request))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                return  # the client went away; finally frees its rows
            item = getter.result()
            if item is None:
                break
            _, progress, shown = item
            yield sse("progress", _json(progress))
            if shown is not None:
                yield sse("preview", _json(_rounded(shown)))
        try:
            done = result_of(sub)
        except ApiError as e:
            yield sse("error", _json({"status": e.status, "detail": e.detail}))
            return
        record(state, done, body)
        yield sse("result", sample_json(done, body))
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        abandon(sub)


def _rounded(shown: dict) -> dict:
    """orjson writes NaN as null already; a preview is small, so rounding keeps it smaller."""
    return {k: np.round(v, 4) if isinstance(v, np.ndarray) else v for k, v in shown.items()}


@router.post(
    "/sample/stream",
    dependencies=[Depends(require_json)],
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {  # one event: its name, and its JSON object as text
                        "type": "object",
                        "required": ["event", "data"],
                        "properties": {
                            "event": {"type": "string", "enum": list(EVENTS)},
                            "data": {"type": "string", "contentMediaType": "application/json"},
                        },
                    }
                }
            },
            "description": "Server-Sent Events: queued, progress, preview, then result (the "
            "body /sample answers) or error.",
        },
        **error_responses(400, 413, 415, 422, 503, 504),
    },
)
async def sample_stream(body: StreamRequest, request: Request, state: StateDep):
    """/sample, with progress and previews of x_t and the predicted x_0 as it denoises."""
    limit = state.settings.max_preview_rows
    if body.preview_rows > limit:
        raise field_error(
            "preview_rows",
            f"preview_rows must be at most {limit} on this server",
            f"0 <= preview_rows <= {limit}",
        )
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    reporter = _Reporter(loop, queue, body.every, body.preview_rows)
    sub = await submit_job(request, state, body, body.n, state.settings.max_n, on_step=reporter)
    _mark_preview(sub.job, body.preview_rows)
    sub.future.add_done_callback(lambda _: queue.put_nowait(None))
    return StreamingResponse(
        _events(request, sub, queue, body, state),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _mark_preview(job: Job, rows: int) -> None:
    """The chunks holding the first `rows` rows keep their x_0 prediction. Marked once the job is
    queued: a step that ran before this only leaves that step without a preview."""
    covered = 0
    for c in job.chunks:
        if covered >= rows:
            break
        c.preview = True
        covered += c.rows
