"""``PaymentsSweepWorkflow``: scheduled; starts the workflows of top-ups and refunds that were
recorded but never started, so money recorded in the database is never left without its flow."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.sweep import SweepActivities
    from walletflow.payments.contracts import PaymentsSweepInput, PaymentsSweepResult


@workflow.defn(name="PaymentsSweepWorkflow")
class PaymentsSweepWorkflow:
    @workflow.run
    async def run(self, params: PaymentsSweepInput | None = None) -> PaymentsSweepResult:
        return await workflow.execute_activity_method(
            SweepActivities.sweep, params or PaymentsSweepInput(),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5),
        )
