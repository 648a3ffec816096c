"""A request-body limit (Starlette has none): 413 before or while the body arrives.

One limit for every route (GIGASYNTH_MAX_BODY_BYTES, JSON bodies), and larger ones for the
few paths that take an upload (a layout image: GIGASYNTH_MAX_LAYOUT_BYTES)."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` (over `uploads[path]` for an upload path): by
    Content-Length up front, else while counting.

    A body that outgrows the limit while streaming raises HTTPException(413) from
    `receive`, which FastAPI passes through to the JSON error handlers.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, uploads: dict[str, tuple[int, str]] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads or {}  # path -> (limit, the setting that sets it)

    def limit(self, path: str) -> tuple[int, str]:
        """The byte limit of a request to `path` and the setting that sets it."""
        return self.uploads.get(path, (self.max_bytes, "GIGASYNTH_MAX_BODY_BYTES"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, setting = self.limit(scope.get("path", ""))
        refusal = f"request body exceeds the limit of {max_bytes} bytes ({setting})"
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > max_bytes):
                body = json.dumps({"error": refusal}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise HTTPException(413, refusal)
            return message

        await self.app(scope, counting_receive, send)
