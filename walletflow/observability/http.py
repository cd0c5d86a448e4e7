"""HTTP latency for the API: a pure ASGI middleware (cheap on the ingest hot path) and the
``/metrics`` endpoint."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from walletflow.observability import metrics


class RequestMetrics:
    """Observe every HTTP request's latency by method, route template and status. A path that
    matched no route is counted as ``unmatched`` so random URLs cannot grow the series."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics.HTTP_REQUEST_SECONDS.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    """The matched route's path template with its router prefix (``/v1/customers/{customer_id}``).
    Recent FastAPI keeps a prefixed route's full template in ``scope["fastapi"]``; older ones in
    ``scope["route"]``."""
    effective: Any = (scope.get("fastapi") or {}).get("effective_route_context")
    route: Any = effective if effective is not None else scope.get("route")
    return str(getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched")


async def metrics_endpoint() -> Response:
    """Prometheus' text format; unauthenticated (see ``WALLETFLOW_METRICS_ENABLED``)."""
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)
