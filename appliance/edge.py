"""The one middleware every request passes: it refuses bodies over the cap, adds
the security headers (the app factory gives it web/security.py's) to the answer, and
counts and times it by endpoint name.

One layer instead of one per concern: each ASGI layer wraps `send` in another
coroutine call per message, and on a check-in that is most of the framework's cost.
Endpoints are counted by name, never by raw path, so that probing random URLs cannot
blow up the number of series.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance.metrics import Metrics

_HSTS = (b"strict-transport-security", b"max-age=31536000")


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        headers: list[tuple[bytes, bytes]],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.headers = headers  # added unless the answer set its own
        self._header_names = frozenset(name for name, _ in headers)
        # prometheus_client's labels() takes a lock and builds a key on every call:
        # keep each child once (endpoints x methods x statuses is small and bounded).
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        https = scope.get("scheme") == "https"
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            receive = _refuse_body  # answered before a byte of it is read
        elif length is None:
            receive = _capped(receive, self.max_body_bytes)

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if any(name.lower() in self._header_names for name, _ in headers):
                    present = {name.lower() for name, _ in headers}
                    headers += [(n, v) for n, v in self.headers if n not in present]
                else:
                    headers += self.headers
                if https:
                    headers.append(_HSTS)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            endpoint = scope.get("endpoint")
            name = getattr(endpoint, "__name__", None) or "unmatched"
            self._count(name, scope["method"], status, time.perf_counter() - began)

    def _count(self, name: str, method: str, status: int, seconds: float) -> None:
        counter = self._counters.get((name, method, status))
        if counter is None:
            counter = self.metrics.http_requests.labels(name, method, str(status))
            self._counters[(name, method, status)] = counter
        counter.inc()
        timer = self._timers.get(name)
        if timer is None:
            timer = self._timers[name] = self.metrics.http_latency.labels(name)
        timer.observe(seconds)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large() -> HTTPException:
    # Rendered in the one JSON error shape by the app's exception handlers.
    return HTTPException(413, "the request body is too large")


async def _refuse_body() -> Message:
    raise _too_large()


def _capped(receive: Receive, limit: int) -> Receive:
    """A body without a declared length (chunked) is counted as it arrives."""
    seen = 0

    async def receive_capped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _too_large()
        return message

    return receive_capped
