"""Build and run the worker: every workflow and activity on one task queue."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.migration import MigrationActivities
from activities.recharge import RechargeActivities
from activities.refunds import RefundActivities
from activities.settlement import SettlementActivities
from activities.sweep import SweepActivities
from activities.topups import TopUpActivities
from activities.webhooks import WebhookActivities
from walletflow.db.engine import create_engine
from walletflow.ledger.service import Ledger
from walletflow.observability.logs import setup_logging
from walletflow.payments.refunds import Refunds
from walletflow.payments.service import TopUps
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.recharge.service import Recharges
from walletflow.risk import scoring as risk_scoring
from walletflow.risk.model import CombinedScorer
from walletflow.risk.usage_model import UsageRiskScorer
from walletflow.settings import Settings, get_settings
from walletflow.temporal_client import connect, register_search_attributes
from walletflow.webhooks.service import Webhooks
from worker.metrics import ActivityMetrics, serve_metrics
from workflows.grant_expiry import GrantExpiryWorkflow
from workflows.migration import StripeCutoverWorkflow, StripeMigrationWorkflow
from workflows.recharge import (
    AutoRechargeRelayWorkflow,
    AutoRechargeSweepWorkflow,
    AutoRechargeWorkflow,
    ensure_relay,
)
from workflows.refund import DisputeWorkflow, TopUpRefundWorkflow
from workflows.settlement import UsageSettlementWorkflow
from workflows.sweep import PaymentsSweepWorkflow
from workflows.topup import TopUpWorkflow
from workflows.webhooks import WebhookDeliveryWorkflow, WebhookDispatchWorkflow

log = logging.getLogger("walletflow.worker")


def scorer_from(settings: Settings) -> CombinedScorer:
    """Model plus rules, loaded (or built) once per worker: see walletflow/risk/scoring.py."""
    return risk_scoring.scorer_from(settings)


def scorers_from(settings: Settings) -> tuple[CombinedScorer, UsageRiskScorer]:
    """The top-up and the usage scorer, from one artifact load (or the built-in models)."""
    return risk_scoring.scorers_from(settings)


def build_worker(client: Client, engine: AsyncEngine, settings: Settings) -> Worker:
    """The worker with all workflows and activities; dependencies are built once, here."""
    ledger, top_ups, gateway = Ledger(engine), TopUps(engine), StripeGateway.from_settings(settings)
    credit_scorer, usage_scorer = scorers_from(settings)
    top_up_activities = TopUpActivities(top_ups, ledger, gateway, credit_scorer, settings)
    refunds = Refunds(engine, ledger)
    refund_activities = RefundActivities(refunds, top_ups, gateway)
    sweep_activities = SweepActivities(top_ups, refunds, settings)
    webhook_activities = WebhookActivities(Webhooks(engine), client, settings)
    recharge_activities = RechargeActivities(client, Recharges(engine), top_ups, ledger, gateway, settings)
    # Scheduled runs: usage settlement and grant expiry; settlement scores usage with the usage
    # model loaded above (the spend rules stay settlement's own hook).
    settlement_activities = SettlementActivities(engine, ledger, gateway, settings, usage_risk=usage_scorer)
    migration_activities = MigrationActivities(engine, settings)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[
            TopUpWorkflow, TopUpRefundWorkflow, DisputeWorkflow, PaymentsSweepWorkflow,
            WebhookDispatchWorkflow, WebhookDeliveryWorkflow, UsageSettlementWorkflow, GrantExpiryWorkflow,
            AutoRechargeWorkflow, AutoRechargeRelayWorkflow, AutoRechargeSweepWorkflow,
            StripeMigrationWorkflow, StripeCutoverWorkflow,
        ],
        activities=[
            *top_up_activities.all(), *refund_activities.all(), *sweep_activities.all(), *webhook_activities.all(),
            *settlement_activities.all(), *recharge_activities.all(), *migration_activities.all(),
        ],
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.worker_sticky_timeout_s),
        interceptors=[ActivityMetrics()],
    )


async def run(settings: Settings | None = None) -> None:
    """Run until SIGINT or SIGTERM, then finish in-flight activities and exit."""
    settings = settings or get_settings()
    serve_metrics(settings.worker_metrics_port)
    client = await connect(settings)
    await register_search_attributes(client, settings.temporal_namespace)
    engine = create_engine(settings=settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with build_worker(client, engine, settings):
            # The relay turns the trigger outbox into recharge signals; one per task queue.
            await ensure_relay(client, settings)
            log.info("worker running on task queue %s at %s", settings.task_queue, settings.temporal_address)
            await stop.wait()
    finally:
        await engine.dispose()


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    asyncio.run(run(settings))
