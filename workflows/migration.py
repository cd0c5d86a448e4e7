"""``StripeMigrationWorkflow`` (id ``migration-stripe-{id}``): map metered prices, then page
through the Stripe account's customers, one heartbeating activity per page, continuing as new
every ``pages_per_run`` pages with the cursor so a 100,000-customer account keeps a bounded
history; then store the report. ``StripeCutoverWorkflow`` (``migration-stripe-{id}-cutover``)
is the separate, explicit cut-over step.

A dry run is the same workflow: the service turns the writes off. The cursor is also in the
run's row, and every write is keyed on Stripe ids, so a retried page (worker killed mid-page)
or a second run imports nothing twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.migration import MigrationActivities
    from walletflow.migration.contracts import (
        CutoverInput,
        MigrationInput,
        MigrationOutcome,
        MigrationRef,
        PageInput,
    )

_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                     maximum_attempts=20)
_PAGE_TIMEOUT = timedelta(minutes=30)
#: A page heartbeats after every customer; a silent worker is taken as dead after this.
_HEARTBEAT = timedelta(seconds=10)
#: Bounds (TigerBeetle's "a limit on everything"): pages per run, runs in all.
MAX_PAGES_PER_RUN = 200


@workflow.defn(name="StripeMigrationWorkflow")
class StripeMigrationWorkflow:
    def __init__(self) -> None:
        self.progress: dict[str, Any] = {}

    @workflow.query
    def status(self) -> dict[str, Any]:
        return self.progress

    @workflow.run
    async def run(self, params: MigrationInput) -> MigrationOutcome:
        ref = MigrationRef(migration_id=params.migration_id)
        try:
            return await self._run(params, ref, max(1, min(params.pages_per_run, MAX_PAGES_PER_RUN)))
        except ActivityError as exc:
            await workflow.execute_activity_method(
                MigrationActivities.migration_fail, args=[ref, str(exc.cause or exc)],
                start_to_close_timeout=timedelta(minutes=1), retry_policy=_RETRY,
            )
            raise

    async def _run(self, params: MigrationInput, ref: MigrationRef, pages_per_run: int) -> MigrationOutcome:
        if not params.prices_done:
            await workflow.execute_activity_method(
                MigrationActivities.migration_prices, ref, start_to_close_timeout=_PAGE_TIMEOUT,
                heartbeat_timeout=None, retry_policy=_RETRY,
            )
        cursor, pages = params.cursor, params.pages_done
        for _ in range(pages_per_run):
            page = await workflow.execute_activity_method(
                MigrationActivities.migration_page,
                PageInput(migration_id=params.migration_id, cursor=cursor, pages_done=pages),
                start_to_close_timeout=_PAGE_TIMEOUT, heartbeat_timeout=_HEARTBEAT, retry_policy=_RETRY,
            )
            cursor, pages = page.next_cursor, pages + 1
            self.progress = {"pages_done": pages, "cursor": cursor}
            if not page.has_more:
                return await workflow.execute_activity_method(
                    MigrationActivities.migration_finish, ref, start_to_close_timeout=_PAGE_TIMEOUT,
                    retry_policy=_RETRY,
                )
        workflow.continue_as_new(MigrationInput(
            migration_id=params.migration_id, cursor=cursor, pages_done=pages, prices_done=True,
            pages_per_run=pages_per_run,
        ))


@workflow.defn(name="StripeCutoverWorkflow")
class StripeCutoverWorkflow:
    @workflow.run
    async def run(self, params: CutoverInput) -> dict[str, Any]:
        cursor, pages = params.cursor, params.pages_done
        for _ in range(MAX_PAGES_PER_RUN):
            page = await workflow.execute_activity_method(
                MigrationActivities.cutover_page,
                CutoverInput(migration_id=params.migration_id, cursor=cursor, pages_done=pages),
                start_to_close_timeout=_PAGE_TIMEOUT, heartbeat_timeout=timedelta(minutes=5), retry_policy=_RETRY,
            )
            cursor, pages = page.next_cursor, pages + 1
            if not page.has_more:
                return await workflow.execute_activity_method(
                    MigrationActivities.cutover_finish, MigrationRef(migration_id=params.migration_id),
                    start_to_close_timeout=_PAGE_TIMEOUT, retry_policy=_RETRY,
                )
        workflow.continue_as_new(CutoverInput(migration_id=params.migration_id, cursor=cursor, pages_done=pages))
