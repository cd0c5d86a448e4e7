"""Stripe-to-wallet migration activities: adapters from the workflows to ``walletflow.migration``.

Every activity is safe to run again after a crash at any line (see walletflow/migration/service.py).
The Stripe key is read from the settings here, never passed through workflow history. Long
activities heartbeat their progress so a dead worker is noticed within the heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from walletflow.errors import WalletflowError
from walletflow.migration.contracts import (
    CutoverInput,
    CutoverPage,
    MigrationOutcome,
    MigrationRef,
    PageInput,
    PageResult,
)
from walletflow.migration.service import Migrations, RechargeDefaults
from walletflow.migration.stripe_source import StripeSource
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.settings import Settings

log = logging.getLogger("walletflow.migration")


class MigrationActivities:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.migrations = Migrations(engine, recharge=RechargeDefaults(
            threshold=settings.migration_recharge_threshold, target=settings.migration_recharge_target,
            daily_cap=settings.migration_recharge_daily_cap, monthly_cap=settings.migration_recharge_monthly_cap,
        ))
        self.settings = settings
        # The SDK retries network errors, 409 and 5xx but never a 429: StripeSource backs off.
        self.gateway = StripeGateway(settings.stripe_api_key, settings.stripe_api_base, max_network_retries=2)
        # One bucket per worker process: every migration activity of this worker shares the rate.
        self.source = StripeSource(self.gateway, settings.migration_stripe_rps, settings.migration_rate_limit_backoff_s)

    def all(self) -> list[Callable[..., Any]]:
        return [self.migration_prices, self.migration_page, self.migration_finish, self.migration_fail,
                self.cutover_page, self.cutover_finish]

    @activity.defn(name="migration_prices")
    async def migration_prices(self, ref: MigrationRef) -> int:
        section = await _business(self.migrations.map_prices(uuid.UUID(ref.migration_id), self.source))
        return len(section["unmapped"])

    @activity.defn(name="migration_page")
    async def migration_page(self, page: PageInput) -> PageResult:
        migration_id = uuid.UUID(page.migration_id)
        before = (self.source.stats.calls, self.source.stats.rate_limited)
        crash_after = self.settings.crash_migration_after

        def progress(done: int) -> None:
            activity.heartbeat({"cursor": page.cursor, "done": done})
            # Counted over the run (pages before this one are full), so a test can stop mid-run.
            if crash_after and page.pages_done * self.settings.migration_page_size + done == crash_after:
                raise _CrashPause()

        try:
            cursor, has_more, count = await _business(self.migrations.import_page(
                migration_id, self.source, page.cursor, page.pages_done, self.settings.migration_page_size, progress,
            ))
        except _CrashPause:
            # Tests only: hold the page half done (heartbeating) until the worker is killed.
            log.warning("crash test: pausing mid-page of migration %s", page.migration_id)
            for _ in range(600):
                activity.heartbeat({"cursor": page.cursor, "paused": True})
                await asyncio.sleep(0.1)
            raise ApplicationError("crash pause ended without a crash") from None
        log.info("migration %s: page %d done (%d customers)", page.migration_id, page.pages_done + 1, count)
        return PageResult(next_cursor=cursor, has_more=has_more, customers=count,
                          stripe_calls=self.source.stats.calls - before[0],
                          rate_limited=self.source.stats.rate_limited - before[1])

    @activity.defn(name="migration_finish")
    async def migration_finish(self, ref: MigrationRef) -> MigrationOutcome:
        report = await _business(self.migrations.finish(uuid.UUID(ref.migration_id)))
        return MigrationOutcome(
            migration_id=ref.migration_id, status=report["status"], customers=report["counts"]["customers"],
            differences=report["counts"]["differences"], unmapped_prices=len(report["unmapped_prices"]),
        )

    @activity.defn(name="migration_fail")
    async def migration_fail(self, ref: MigrationRef, error: str) -> None:
        await self.migrations.fail(uuid.UUID(ref.migration_id), error)

    @activity.defn(name="migration_cutover_page")
    async def cutover_page(self, page: CutoverInput) -> CutoverPage:
        migration_id = uuid.UUID(page.migration_id)
        if page.cursor is None and page.pages_done == 0:
            await _business(self.migrations.start_cutover(migration_id))
        cursor, has_more, done = await _business(self.migrations.cutover_page(
            migration_id, self.source, page.cursor, self.settings.migration_page_size))
        activity.heartbeat(cursor)
        return CutoverPage(next_cursor=cursor, has_more=has_more, subscriptions=done)

    @activity.defn(name="migration_cutover_finish")
    async def cutover_finish(self, ref: MigrationRef) -> dict[str, Any]:
        return await _business(self.migrations.finish_cutover(uuid.UUID(ref.migration_id)))


class _CrashPause(Exception):
    pass


async def _business(work: Any) -> Any:
    """A typed business error (bad input, unknown run) fails for good; anything else retries."""
    try:
        return await work
    except WalletflowError as exc:
        raise ApplicationError(f"{exc.code}: {exc.detail}", type=exc.code, non_retryable=True) from exc
