"""Webhook activities: the dispatcher's fan-out and workflow starts, and one delivery attempt.

Inputs and outputs carry ids and counts only. The endpoint's secret and the event's data are
read from the database inside :meth:`WebhookActivities.deliver`, so neither ever reaches a
workflow's history; failures say "HTTP 500" or an exception's class name, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import (
    ApplicationError,
    ApplicationErrorCategory,
    WorkflowAlreadyStartedError,
)

from walletflow.errors import NotFound
from walletflow.observability import metrics
from walletflow.settings import Settings
from walletflow.temporal_client import CUSTOMER_ID
from walletflow.webhooks import sender
from walletflow.webhooks.contracts import (
    DeliveryOutcome,
    DeliveryRef,
    DeliveryWorkflowInput,
    FanOutRequest,
    FanOutResult,
    FinishRequest,
    StartRequest,
    StartResult,
)
from walletflow.webhooks.schemas import UnstartedDelivery, delivery_workflow_id
from walletflow.webhooks.service import Webhooks

log = logging.getLogger(__name__)

#: The delivery workflow, started by name (importing the workflow module here would be circular).
DELIVERY_WORKFLOW = "WebhookDeliveryWorkflow"
#: Workflow starts in flight at once while a dispatch run starts its batch.
_START_CONCURRENCY = 16


class WebhookActivities:
    """The worker builds one instance (engine, Temporal client, settings) and registers it."""

    def __init__(self, webhooks: Webhooks, client: Client, settings: Settings) -> None:
        self.webhooks = webhooks
        self.client = client
        self.settings = settings
        self._http: httpx.AsyncClient | None = None

    def _http_client(self) -> httpx.AsyncClient:
        # Made on first use, inside the worker's event loop, and kept for the worker's life.
        if self._http is None:
            self._http = sender.new_client(self.settings.webhook_timeout_s)
        return self._http

    def all(self) -> list[Callable[..., Any]]:
        return [self.fan_out, self.start_deliveries, self.deliver, self.finish]

    @activity.defn(name="webhooks.fan_out")
    async def fan_out(self, request: FanOutRequest) -> FanOutResult:
        """Turn up to N outbox events into deliveries (one transaction, see ``Webhooks.fan_out``)."""
        limit = request.max_events if request.max_events is not None else self.settings.webhook_dispatch_batch_size
        events, created = await self.webhooks.fan_out(limit)
        return FanOutResult(events=events, deliveries=created, more=limit > 0 and events >= limit)

    @activity.defn(name="webhooks.start_deliveries")
    async def start_deliveries(self, request: StartRequest) -> StartResult:
        """Start the workflow of every delivery not yet recorded as started (at most N).

        A delivery whose workflow an interrupted run already started is found running (and only
        recorded) or finished (and a new run finds nothing to send): never sent twice because
        of a restart.
        """
        limit = request.max_starts if request.max_starts is not None else self.settings.webhook_start_batch_size
        if limit <= 0:
            return StartResult()
        pending = await self.webhooks.unstarted_deliveries(limit + 1)
        batch, more = pending[:limit], len(pending) > limit
        gate = asyncio.Semaphore(_START_CONCURRENCY)

        async def start_one(delivery: UnstartedDelivery) -> None:
            async with gate:
                await self._start(delivery)

        outcomes = await asyncio.gather(*(start_one(d) for d in batch), return_exceptions=True)
        started = [d.id for d, outcome in zip(batch, outcomes, strict=True) if outcome is None]
        await self.webhooks.mark_started(started)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            # Recorded what did start; the retry (or the next run) starts the rest.
            raise ApplicationError(
                f"{len(failed)} of {len(batch)} delivery workflows did not start: {type(failed[0]).__name__}"
            )
        return StartResult(started=len(started), more=more)

    async def _start(self, delivery: UnstartedDelivery) -> None:
        s = self.settings
        params = DeliveryWorkflowInput(
            delivery_id=str(delivery.id), max_attempts=s.webhook_max_attempts,
            initial_interval_s=s.webhook_initial_interval_s, backoff_coefficient=s.webhook_backoff_coefficient,
            max_interval_s=s.webhook_max_interval_s, timeout_s=s.webhook_timeout_s,
        )
        attributes = (
            TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, str(delivery.customer_id))])
            if delivery.customer_id is not None else None
        )
        try:
            await self.client.start_workflow(
                DELIVERY_WORKFLOW, params, id=delivery_workflow_id(delivery.id), task_queue=s.task_queue,
                # A closed run with this id may exist: a run that started it and crashed before
                # recording so, or an operator's retry. A new run is harmless either way: the
                # deliver activity sends nothing for a delivery that is no longer pending.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=attributes,
                # A delivery lives as long as its retries; this bounds a stuck one.
                execution_timeout=timedelta(days=7),
            )
        except WorkflowAlreadyStartedError:
            pass  # running already (USE_EXISTING normally answers with it): recorded below

    @activity.defn(name="webhooks.deliver")
    async def deliver(self, ref: DeliveryRef) -> DeliveryOutcome:
        """One attempt: POST the signed event; 2xx delivers, anything else fails this attempt
        (retried by the workflow's retry policy). Every attempt is logged in the database."""
        delivery_id = uuid.UUID(ref.delivery_id)
        try:
            job = await self.webhooks.job(delivery_id)
        except NotFound as exc:
            raise ApplicationError(exc.detail, type="NotFound", non_retryable=True) from exc
        if job.status != "pending":
            info = await self.webhooks.get_delivery(delivery_id)  # an earlier attempt finished it
            return DeliveryOutcome(status=info.status, attempts=info.attempt_count, status_code=info.last_status_code)
        if not job.endpoint_enabled:
            info = await self.webhooks.finish(delivery_id, "canceled")
            metrics.WEBHOOK_DELIVERIES.labels("canceled").inc()
            return DeliveryOutcome(status=info.status, attempts=info.attempt_count)
        result = await sender.post(self._http_client(), job)
        attempt = await self.webhooks.record_attempt(
            delivery_id, result.status_code, result.error, result.duration_ms, result.delivered
        )
        metrics.WEBHOOK_DELIVERIES.labels("delivered" if result.delivered else "failed_attempt").inc()
        if result.delivered:
            return DeliveryOutcome(status="delivered", attempts=attempt, status_code=result.status_code)
        reason = f"HTTP {result.status_code}" if result.status_code is not None else (result.error or "").split(":")[0]
        # Retryable: the retry policy spaces the next attempt out. The message is safe for history.
        # Benign: a receiver that is down is the platform's business, not a worker error to
        # log with a traceback on every attempt (the attempt log has the details).
        raise ApplicationError(
            f"endpoint answered {reason}", type="WebhookAttemptFailed", category=ApplicationErrorCategory.BENIGN
        )

    @activity.defn(name="webhooks.finish")
    async def finish(self, request: FinishRequest) -> DeliveryOutcome:
        """Out of attempts: mark the delivery failed (a delivered one stays delivered)."""
        info = await self.webhooks.finish(uuid.UUID(request.delivery_id), request.status)
        if info.status == "failed":  # a delivery that went out in the meantime stays delivered
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
        return DeliveryOutcome(status=info.status, attempts=info.attempt_count, status_code=info.last_status_code)
