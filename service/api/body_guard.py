"""Guards on a request body before it is parsed: a size cap (413) and the JSON type (415).

The cap is pure ASGI, like timing.py: a declared Content-Length over MAX_BODY_BYTES is refused
before a byte is read, and a chunked body is counted as it streams in, so memory per request
stays at the cap whatever the client sends. The body (at most the cap) is read here and handed
on whole; the messages after it reach the app untouched, so routes still see a disconnect.
"""

from __future__ import annotations

import email.message

import orjson
from fastapi import Request

from service.api.errors import ApiError, safe_text

JSON = "application/json"


def _too_large(limit: int) -> bytes:
    return orjson.dumps(
        {"detail": f"request body over {limit} bytes (MAX_BODY_BYTES): requests are small JSON"}
    )


class BodyLimitMiddleware:
    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes

    async def _refuse(self, send) -> None:
        body = _too_large(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    # the rest of the body is never read, so this connection cannot be reused
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before the body ended
                first = message
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        pending = [first]

        async def replay():
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


async def require_json(request: Request) -> None:
    """415 naming application/json for a body of another type or of none (FastAPI reads only a
    JSON type as JSON, and would answer a vague 422 about a dict)."""
    declared = request.headers.get("content-type", "")
    message = email.message.Message()
    message["content-type"] = declared
    subtype = message.get_content_subtype()
    if message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    ):
        return
    got = repr(safe_text(declared, 64)) if declared else "none"
    raise ApiError(415, f"Content-Type must be {JSON}, got {got}")
