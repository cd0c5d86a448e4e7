"""``walletflow recharge set|show|disable|sweep``: auto-recharge policies from the command line
(same settings as the worker and the API; registered in walletflow/cli.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import uuid
from typing import Any

import typer

from walletflow.cli_support import run_business

recharge_app = typer.Typer(help="Auto-recharge policies (one AutoRechargeWorkflow per wallet).", no_args_is_help=True)


@recharge_app.command("set")
def recharge_set(
    customer_id: str = typer.Option(..., help="walletflow customer id (UUID)."),
    asset: str = typer.Option(..., help="Fiat wallet to refill (its currency code, e.g. USD)."),
    threshold: int = typer.Option(..., help="Recharge when available balance drops below this (minor units)."),
    target: int = typer.Option(..., help="Each recharge refills to this, in one charge (minor units)."),
    payment_method: str = typer.Option(..., help="Stripe PaymentMethod id (pm_...) to charge off-session."),
    daily_cap: int = typer.Option(..., help="At most this much charged per UTC day (minor units)."),
    monthly_cap: int = typer.Option(..., help="At most this much charged per UTC month (minor units)."),
    consent_method: str = typer.Option(..., help="How the customer agreed: checkbox, signed_terms, ..."),
    consent_at: str | None = typer.Option(None, help="When they agreed (ISO 8601 with zone; default now)."),
    consent_text: str | None = typer.Option(None, help="The words they agreed to."),
    disabled: bool = typer.Option(False, "--disabled", help="Save the policy switched off."),
) -> None:
    """Create or replace a wallet's policy; saves the card on the customer's Stripe customer."""

    async def run(engine: Any) -> dict[str, Any]:
        from walletflow.errors import ValidationError
        from walletflow.payments.service import TopUps
        from walletflow.payments.stripe_gateway import StripeGateway
        from walletflow.recharge.schemas import Consent
        from walletflow.recharge.service import Recharges
        from walletflow.recharge.stripe_charges import ensure_stripe_customer, save_payment_method
        from walletflow.settings import get_settings

        customer = uuid.UUID(customer_id)
        at = dt.datetime.fromisoformat(consent_at) if consent_at else dt.datetime.now(dt.UTC)
        if at.tzinfo is None:
            raise ValidationError("--consent-at needs a time zone (e.g. 2026-11-27T10:00:00+00:00)")
        recharges = Recharges(engine)
        await recharges.list_policies(customer)  # unknown customer: a clear error before Stripe
        gateway = StripeGateway.from_settings(get_settings())
        stripe_customer = await ensure_stripe_customer(TopUps(engine), gateway, customer)
        await save_payment_method(gateway, stripe_customer, payment_method)
        policy = await recharges.set_policy(
            customer, asset=asset, threshold=threshold, target=target, payment_method_id=payment_method,
            daily_cap=daily_cap, monthly_cap=monthly_cap, enabled=not disabled,
            consent=Consent(at, consent_method, consent_text),
        )
        return _json(policy)

    _echo(_run(run))


@recharge_app.command("show")
def recharge_show(
    customer_id: str = typer.Argument(..., help="walletflow customer id (UUID)."),
    asset: str | None = typer.Option(None, help="Only this asset's policy."),
) -> None:
    """Print the customer's policies (consent, decline count, why walletflow disabled one)."""

    async def run(engine: Any) -> Any:
        from walletflow.recharge.service import Recharges

        recharges = Recharges(engine)
        if asset is not None:
            return _json(await recharges.get_policy(uuid.UUID(customer_id), asset))
        return [_json(p) for p in await recharges.list_policies(uuid.UUID(customer_id))]

    _echo(_run(run))


@recharge_app.command("disable")
def recharge_disable(
    customer_id: str = typer.Argument(..., help="walletflow customer id (UUID)."),
    asset: str = typer.Option(..., help="The wallet's asset."),
) -> None:
    """Switch a policy off. A charge in flight finishes; no other starts."""

    async def run(engine: Any) -> dict[str, Any]:
        from walletflow.recharge.service import Recharges

        return _json(await Recharges(engine).disable(uuid.UUID(customer_id), asset))

    _echo(_run(run))


@recharge_app.command("sweep")
def recharge_sweep(limit: int = typer.Option(1000, help="At most this many wallets per run.")) -> None:
    """Run AutoRechargeSweepWorkflow once now (the schedule runs it regularly) and print its result."""

    async def run(engine: Any) -> dict[str, Any]:
        from walletflow.recharge.contracts import AutoRechargeSweepInput
        from walletflow.settings import get_settings
        from walletflow.temporal_client import connect
        from workflows.recharge import AutoRechargeSweepWorkflow

        settings = get_settings()
        client = await connect(settings)
        result = await client.execute_workflow(
            AutoRechargeSweepWorkflow.run, AutoRechargeSweepInput(limit=limit),
            id=f"auto-recharge-sweep-manual-{uuid.uuid4().hex[:12]}", task_queue=settings.task_queue,
        )
        return result.model_dump()

    _echo(_run(run))


def _run(work: Any) -> Any:
    """Run ``work(engine)`` on a fresh engine; typed business errors as in every command."""
    from walletflow.db.engine import create_engine, dispose

    async def main() -> Any:
        engine = create_engine()
        try:
            return await work(engine)
        finally:
            await dispose(engine)

    return run_business(main)


def _json(policy: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(policy), default=str))


def _echo(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))
    # The Temporal SDK can crash at interpreter exit after client use (sdk-python#300).
    sys.stdout.flush()
