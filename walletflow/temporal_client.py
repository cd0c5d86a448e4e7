"""The one place that connects to Temporal, and the helpers the API and CLI use to start and
signal top-up workflows (so both speak to the workflow the same way)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from walletflow.migration.contracts import CutoverInput, MigrationInput, MigrationOutcome
from walletflow.migration.service import MigrationInfo, Migrations
from walletflow.payments.contracts import (
    DisputeInput,
    PaymentCreated,
    PaymentSignal,
    RefundRef,
    TopUpProgress,
    TopUpWorkflowInput,
)
from walletflow.payments.schemas import TopUpInfo
from walletflow.settings import Settings, get_settings
from workflows.refund import DisputeWorkflow, TopUpRefundWorkflow
from workflows.topup import TopUpWorkflow

log = logging.getLogger(__name__)

#: Keyword search attribute on every customer-scoped workflow (find a customer's money in the UI).
CUSTOMER_ID = SearchAttributeKey.for_keyword("WalletflowCustomerId")


async def connect(settings: Settings | None = None) -> Client:
    """Connect with the settings' address and namespace and the pydantic data converter."""
    settings = settings or get_settings()
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, data_converter=pydantic_data_converter
    )


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Register ``WalletflowCustomerId`` if the server does not know it yet (dev server, first run)."""
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={CUSTOMER_ID.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
            )
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            # A managed cluster may not let workers change the namespace: the operator registers
            # it once (`temporal operator search-attribute create`); starting a top-up says so
            # clearly if nobody did.
            log.warning("could not register the %s search attribute: %s", CUSTOMER_ID.name, exc.message)


async def start_top_up(client: Client, top_up: TopUpInfo, settings: Settings) -> WorkflowHandle:
    """Start the top-up's workflow once. A retry finds the running (or finished) one; a finished
    top-up is never started a second time."""
    params = TopUpWorkflowInput(
        top_up_id=str(top_up.id),
        customer_id=str(top_up.customer_id),
        payment_deadline_s=settings.topup_payment_deadline_s,
        call_timeout_s=settings.topup_call_timeout_s,
        review_deadline_s=settings.topup_review_deadline_s,
        poll_interval_s=settings.topup_poll_interval_s,
    )
    try:
        return await client.start_workflow(
            TopUpWorkflow.run,
            params,
            id=top_up.workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, str(top_up.customer_id))]),
        )
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(top_up.workflow_id)


async def start_refund(client: Client, refund_id: uuid.UUID, customer_id: uuid.UUID, settings: Settings) -> WorkflowHandle:
    """Start the Stripe half of a refund whose wallet debit is committed; idempotent by refund id."""
    return await _start_once(
        client, TopUpRefundWorkflow.run, RefundRef(refund_id=str(refund_id)), f"topup-refund-{refund_id}",
        customer_id, settings,
    )


async def start_dispute(client: Client, dispute: DisputeInput, customer_id: uuid.UUID, settings: Settings) -> WorkflowHandle:
    """Start the claw-back of a Stripe dispute; a redelivered event finds the same workflow."""
    return await _start_once(client, DisputeWorkflow.run, dispute, f"dispute-{dispute.dispute_id}", customer_id, settings)


async def _start_once(client: Client, run: Any, arg: Any, workflow_id: str, customer_id: uuid.UUID,
                      settings: Settings) -> WorkflowHandle:
    try:
        return await client.start_workflow(
            run, arg, id=workflow_id, task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, str(customer_id))]),
        )
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(workflow_id)


async def payment_details(handle: WorkflowHandle, wait_s: float) -> PaymentCreated | None:
    """The PaymentIntent's id and client secret, once the workflow made it; None if the workflow
    is over or did not get there in ``wait_s``."""
    try:
        async with asyncio.timeout(wait_s):
            return await handle.execute_update(TopUpWorkflow.payment_details)
    # The SDK turns the timeout's cancellation into WorkflowUpdateRPCTimeoutOrCancelledError.
    except (TimeoutError, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as exc:
        log.info("no payment details for %s: %s", handle.id, type(exc).__name__)
        return None


async def signal_payment(client: Client, workflow_id: str, signal: PaymentSignal) -> bool:
    """Tell a top-up that Stripe has news; False if its workflow is gone (polling covers it)."""
    try:
        await client.get_workflow_handle(workflow_id).signal(TopUpWorkflow.payment_result, signal)
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def signal_review(client: Client, top_up_id: uuid.UUID, workflow_id: str, approve: bool, note: str | None) -> None:
    handle = client.get_workflow_handle(workflow_id)
    await handle.signal(TopUpWorkflow.approve_review if approve else TopUpWorkflow.reject_review, note)


async def query_progress(client: Client, workflow_id: str) -> TopUpProgress | None:
    try:
        return await client.get_workflow_handle(workflow_id).query(TopUpWorkflow.status)
    except RPCError:
        return None


# --- Stripe-to-wallet migration ---------------------------------------------------------------


def migration_workflow_id(migration_id: uuid.UUID | str) -> str:
    return f"migration-stripe-{migration_id}"


def cutover_workflow_id(migration_id: uuid.UUID | str) -> str:
    return f"migration-stripe-{migration_id}-cutover"


async def start_stripe_migration(
    client: Client, migrations: Migrations, settings: Settings, *, dry_run: bool, enable_auto_recharge: bool = False
) -> tuple[MigrationInfo, WorkflowHandle[Any, MigrationOutcome]]:
    """Record a new migration run, then start ``migration-stripe-{id}`` for it."""
    run = await migrations.create(dry_run=dry_run, enable_auto_recharge=enable_auto_recharge)
    handle = await client.start_workflow(
        "StripeMigrationWorkflow",
        MigrationInput(migration_id=str(run.id), pages_per_run=settings.migration_pages_per_run),
        id=migration_workflow_id(run.id), task_queue=settings.task_queue, result_type=MigrationOutcome,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return run, handle


async def start_stripe_cutover(client: Client, migrations: Migrations, settings: Settings, migration_id: uuid.UUID) -> str:
    """Start (or join) the cut-over of a completed real run; refuses a dry or unfinished one."""
    await migrations.check_cutover(migration_id)
    handle = await client.start_workflow(
        "StripeCutoverWorkflow", CutoverInput(migration_id=str(migration_id)),
        id=cutover_workflow_id(migration_id), task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return handle.id
