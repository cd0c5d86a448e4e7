"""Starting a migration or its cut-over: shared by the API and the CLI."""

from __future__ import annotations

import uuid

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from walletflow.migration.contracts import CutoverInput, MigrationInput, MigrationOutcome
from walletflow.migration.service import MigrationInfo, Migrations
from walletflow.settings import Settings


def workflow_id(migration_id: uuid.UUID | str) -> str:
    return f"migration-stripe-{migration_id}"


def cutover_workflow_id(migration_id: uuid.UUID | str) -> str:
    return f"migration-stripe-{migration_id}-cutover"


async def start_migration(
    client: Client, migrations: Migrations, settings: Settings, *, dry_run: bool, enable_auto_recharge: bool = False
) -> tuple[MigrationInfo, WorkflowHandle[MigrationInput, MigrationOutcome]]:
    """Record a new run, then start ``migration-stripe-{id}`` for it."""
    run = await migrations.create(dry_run=dry_run, enable_auto_recharge=enable_auto_recharge)
    handle = await client.start_workflow(
        "StripeMigrationWorkflow",
        MigrationInput(migration_id=str(run.id), pages_per_run=settings.migration_pages_per_run),
        id=workflow_id(run.id), task_queue=settings.task_queue, result_type=MigrationOutcome,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return run, handle


async def start_cutover(client: Client, migrations: Migrations, settings: Settings, migration_id: uuid.UUID) -> str:
    """Start (or join) the cut-over of a completed real run; refuses a dry or unfinished one."""
    await migrations.check_cutover(migration_id)
    handle = await client.start_workflow(
        "StripeCutoverWorkflow", CutoverInput(migration_id=str(migration_id)), id=cutover_workflow_id(migration_id),
        task_queue=settings.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return handle.id
