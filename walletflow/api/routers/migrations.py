"""Stripe-to-wallet migration: start a run (dry by default), watch it, cut over."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field
from temporalio.service import RPCError

from walletflow import temporal_client as temporal
from walletflow.api.deps import ServicesDep, require
from walletflow.api.routers.topups import TemporalUnavailable, temporal_client
from walletflow.migration.service import MigrationInfo, Migrations

log = logging.getLogger(__name__)
router = APIRouter()


class MigrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=True, strict=True, description="Compute everything, change nothing (default).")
    enable_auto_recharge: bool = Field(
        default=False, strict=True,
        description="Import each default payment method as an enabled auto-recharge policy (else disabled).",
    )


class MigrationStarted(BaseModel):
    id: uuid.UUID
    workflow_id: str
    dry_run: bool
    status: str


class MigrationOut(BaseModel):
    id: uuid.UUID
    workflow_id: str
    dry_run: bool
    status: str = Field(description="running, completed or failed")
    cursor: str | None = Field(description="The last Stripe customer id of the last page done.")
    pages_done: int
    customers_done: int
    report: dict[str, Any] = Field(description="Counts, amounts per asset, differences, debts, unmapped prices "
                                               "(so far, while running).")
    cutover_status: str | None
    cutover_report: dict[str, Any] | None
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class CutoverStarted(BaseModel):
    id: uuid.UUID
    workflow_id: str


async def migration_out(migrations: Migrations, run: MigrationInfo) -> MigrationOut:
    report = run.report if run.status == "completed" else await migrations.report(run.id)
    return MigrationOut(
        id=run.id, workflow_id=run.workflow_id, dry_run=run.dry_run, status=run.status, cursor=run.cursor,
        pages_done=run.pages_done, customers_done=run.customers_done, report=report,
        cutover_status=run.cutover_status, cutover_report=run.cutover_report, error=run.error,
        created_at=run.created_at, updated_at=run.updated_at,
    )


@router.post("/migrations/stripe", status_code=status.HTTP_202_ACCEPTED, dependencies=[require("admin")],
             tags=["migrations"])
async def start_stripe_migration(request: Request, services: ServicesDep, body: MigrationIn | None = None) -> MigrationStarted:
    """Start ``migration-stripe-{id}``: a dry run (default) computes the report and changes nothing on
    either side; ``dry_run: false`` imports. Watch it with ``GET /v1/migrations/{id}``."""
    body = body or MigrationIn()
    migrations = Migrations(services.engine)
    try:
        client = await temporal_client(request)
        run, handle = await temporal.start_stripe_migration(client, migrations, services.settings, dry_run=body.dry_run,
                                                  enable_auto_recharge=body.enable_auto_recharge)
    except (RuntimeError, RPCError) as exc:
        log.warning("could not start a Stripe migration: %s", type(exc).__name__)
        raise TemporalUnavailable("the migration workflow could not start; nothing was changed, try again") from exc
    return MigrationStarted(id=run.id, workflow_id=handle.id, dry_run=run.dry_run, status=run.status)


@router.get("/migrations/{migration_id}", dependencies=[require("read")], tags=["migrations"])
async def get_migration(migration_id: uuid.UUID, services: ServicesDep) -> MigrationOut:
    """Progress while it runs, and the report."""
    migrations = Migrations(services.engine)
    return await migration_out(migrations, await migrations.get(migration_id))


@router.post("/migrations/{migration_id}/cut-over", status_code=status.HTTP_202_ACCEPTED,
             dependencies=[require("admin")], tags=["migrations"])
async def cut_over(migration_id: uuid.UUID, request: Request, services: ServicesDep) -> CutoverStarted:
    """The explicit cut-over of a completed real run: bill the final metered period of each mapped
    subscription and cancel it at period end (``migration-stripe-{id}-cutover``). Idempotent."""
    migrations = Migrations(services.engine)
    await migrations.check_cutover(migration_id)
    try:
        client = await temporal_client(request)
        workflow_id = await temporal.start_stripe_cutover(client, migrations, services.settings, migration_id)
    except (RuntimeError, RPCError) as exc:
        raise TemporalUnavailable("the cut-over workflow could not start; nothing was changed, try again") from exc
    return CutoverStarted(id=migration_id, workflow_id=workflow_id)
