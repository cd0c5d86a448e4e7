"""Outbound webhook workflows.

``WebhookDispatchWorkflow``: a short run, scheduled every few seconds (``walletflow schedules
apply``): fan out up to N outbox events into deliveries, then start the workflow of up to M
deliveries not started yet (including those an interrupted run left behind); again, for a few
rounds at most, while a round filled its batch.

``WebhookDeliveryWorkflow`` (id ``webhook-delivery-{delivery_id}``): POST one event to one
endpoint until it answers 2xx; Temporal's retry policy spaces the attempts out exponentially;
after the last one the delivery is marked ``failed``. Only ids travel through here: the
endpoint's secret and the event's data stay in the database.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookActivities
    from walletflow.webhooks.contracts import (
        DeliveryOutcome,
        DeliveryRef,
        DeliveryWorkflowInput,
        DispatchReport,
        FanOutRequest,
        FanOutResult,
        FinishRequest,
        StartRequest,
        StartResult,
        WebhookDispatchInput,
    )

#: Database work: retried with backoff, and given up only after a long while (the next
#: scheduled run picks up whatever this one left).
_DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=5)
_DB_TIMEOUT = timedelta(seconds=60)
#: Marking the outcome must happen: retried without a limit.
_NEVER_GIVE_UP = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
#: Room for the database reads and writes around the HTTP call in one delivery attempt.
_DB_SLACK = timedelta(seconds=30)


@workflow.defn(name="WebhookDispatchWorkflow")
class WebhookDispatchWorkflow:
    @workflow.run
    async def run(self, params: WebhookDispatchInput | None = None) -> DispatchReport:
        params = params or WebhookDispatchInput()
        report = DispatchReport()
        for _ in range(max(1, params.max_rounds)):
            fan: FanOutResult = await workflow.execute_activity_method(
                WebhookActivities.fan_out, FanOutRequest(max_events=params.max_events),
                start_to_close_timeout=_DB_TIMEOUT, retry_policy=_DB_RETRY,
            )
            started: StartResult = await workflow.execute_activity_method(
                WebhookActivities.start_deliveries, StartRequest(max_starts=params.max_starts),
                start_to_close_timeout=_DB_TIMEOUT, retry_policy=_DB_RETRY,
            )
            report.rounds += 1
            report.events += fan.events
            report.deliveries += fan.deliveries
            report.started += started.started
            report.more = fan.more or started.more
            if not report.more:
                break
        return report


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, params: DeliveryWorkflowInput) -> DeliveryOutcome:
        ref = DeliveryRef(delivery_id=params.delivery_id)
        policy = RetryPolicy(
            initial_interval=timedelta(seconds=params.initial_interval_s),
            backoff_coefficient=params.backoff_coefficient,
            maximum_interval=timedelta(seconds=params.max_interval_s),
            maximum_attempts=params.max_attempts,
            non_retryable_error_types=["NotFound"],
        )
        try:
            return await workflow.execute_activity_method(
                WebhookActivities.deliver, ref,
                start_to_close_timeout=timedelta(seconds=params.timeout_s) + _DB_SLACK,
                retry_policy=policy,
            )
        except ActivityError:
            # Out of attempts (each one is in the delivery's attempt log).
            return await workflow.execute_activity_method(
                WebhookActivities.finish, FinishRequest(delivery_id=params.delivery_id, status="failed"),
                start_to_close_timeout=_DB_TIMEOUT, retry_policy=_NEVER_GIVE_UP,
            )
