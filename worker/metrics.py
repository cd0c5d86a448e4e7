"""Worker-side metrics: every activity's latency and outcome (an interceptor, so no activity
has to time itself), and the Prometheus endpoint of a standalone worker."""

from __future__ import annotations

import time
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from walletflow.observability.metrics import ACTIVITY_SECONDS


class _TimedActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        started, outcome = time.perf_counter(), "error"
        try:
            result = await super().execute_activity(input)
            outcome = "ok"
            return result
        finally:
            ACTIVITY_SECONDS.labels(activity.info().activity_type, outcome).observe(time.perf_counter() - started)


class ActivityMetrics(Interceptor):
    """Observe ``walletflow_activity_duration_seconds{activity, outcome}``."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivity(next)


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve the default registry on ``host:port`` from a daemon thread (0: do nothing)."""
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host)
