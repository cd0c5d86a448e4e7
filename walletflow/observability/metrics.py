"""The named Prometheus metrics of walletflow, in the default registry.

Every process (API, worker, ``walletflow dev`` which runs both) counts into the same names; the
API serves them on ``GET /metrics`` and the worker on ``WALLETFLOW_WORKER_METRICS_PORT``. Counters
are counted where the write is made, after it is known to have happened (a replayed idempotent
request counts nothing). Labels are small closed sets (statuses, outcomes, route templates),
never ids or amounts, so the series stay few. With several API processes each one serves its own
numbers; Prometheus sums them per instance.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

#: Usage events by their result: debited, duplicate, insufficient_funds, unmatched, rejected.
EVENTS_INGESTED = Counter("walletflow_events_ingested", "Usage events received, by result", ["status"])
#: Debits posted (not replays), by kind: usage (an ingested event), capture, adjustment, ...
DEBITS = Counter("walletflow_debits", "Debits posted to wallets, by kind", ["kind"])
#: Holds by outcome: authorized, insufficient_funds, wallet_frozen, captured, voided, expired.
HOLDS = Counter("walletflow_holds", "Authorization holds, by outcome", ["outcome"])
#: Top-ups entering a status (initiated, awaiting_payment, scoring, in_review, succeeded, failed,
#: rejected, refunded).
TOPUPS = Counter("walletflow_topups", "Top-ups entering a status", ["status"])
#: Refunds of top-ups by outcome: requested, succeeded, failed.
REFUNDS = Counter("walletflow_refunds", "Refunds of top-ups, by outcome", ["outcome"])
#: Auto-recharge runs by outcome (succeeded, failed, requires_action, disabled, skipped); counted
#: by the auto-recharge activities.
RECHARGES = Counter("walletflow_auto_recharges", "Auto-recharge attempts, by outcome", ["outcome"])
#: Risk decisions on top-ups: approve, review, reject.
RISK_DECISIONS = Counter("walletflow_risk_decisions", "Risk decisions, by decision", ["decision"])
#: Outbound webhook attempts by outcome: delivered, failed_attempt; and final failed/canceled.
WEBHOOK_DELIVERIES = Counter("walletflow_webhook_deliveries", "Outbound webhook attempts, by outcome", ["outcome"])

#: HTTP latency by method, route template (``/v1/customers/{customer_id}``, never the raw path)
#: and status code.
HTTP_REQUEST_SECONDS = Histogram(
    "walletflow_http_request_duration_seconds", "HTTP request latency", ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
#: Activity latency by activity name and outcome (ok, error), measured on the worker.
ACTIVITY_SECONDS = Histogram(
    "walletflow_activity_duration_seconds", "Temporal activity latency", ["activity", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

__all__ = [
    "ACTIVITY_SECONDS", "CONTENT_TYPE_LATEST", "DEBITS", "EVENTS_INGESTED", "HOLDS", "HTTP_REQUEST_SECONDS",
    "RECHARGES", "REFUNDS", "RISK_DECISIONS", "TOPUPS", "WEBHOOK_DELIVERIES", "exposition",
]


def exposition() -> bytes:
    """The current values in Prometheus' text format."""
    return generate_latest()


def count_ingested(results: Sequence[object]) -> None:
    """Count a batch's results by status; each ``debited`` one is a usage debit."""
    by_status: dict[str, int] = {}
    for result in results:
        status = str(getattr(result, "status", "unknown"))
        by_status[status] = by_status.get(status, 0) + 1
    for status, n in by_status.items():
        EVENTS_INGESTED.labels(status).inc(n)
    if by_status.get("debited"):
        DEBITS.labels("usage").inc(by_status["debited"])
