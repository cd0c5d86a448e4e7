"""The payments sweep: start the workflow of any top-up or refund that was recorded but whose
workflow never started (the API answered 503 and the client never retried)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.topups import business_errors
from walletflow import temporal_client as temporal
from walletflow.db.types import utcnow
from walletflow.payments.contracts import PaymentsSweepInput, PaymentsSweepResult
from walletflow.payments.refunds import Refunds
from walletflow.payments.service import TopUps
from walletflow.settings import Settings


class SweepActivities:
    def __init__(self, top_ups: TopUps, refunds: Refunds, settings: Settings) -> None:
        self.top_ups = top_ups
        self.refunds = refunds
        self.settings = settings

    def all(self) -> list[Callable[..., Any]]:
        return [self.sweep]

    @activity.defn(name="payments.sweep")
    async def sweep(self, params: PaymentsSweepInput) -> PaymentsSweepResult:
        """Starting is idempotent (by workflow id), so a sweep racing the API changes nothing."""
        grace_s = self.settings.payments_sweep_grace_s if params.grace_s is None else params.grace_s
        limit = params.limit or self.settings.payments_sweep_batch
        before = utcnow() - dt.timedelta(seconds=grace_s)
        client = activity.client()
        result = PaymentsSweepResult()
        async with business_errors():
            for top_up in await self.top_ups.list_stale_initiated(before, limit):
                await temporal.start_top_up(client, top_up, self.settings)
                result.top_ups_started += 1
            for refund in await self.refunds.list_stale_pending(before, limit):
                await temporal.start_refund(client, refund.id, refund.customer_id, self.settings)
                result.refunds_started += 1
        return result
