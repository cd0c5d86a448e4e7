"""The ``walletflow`` command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from walletflow.db.engine import create_engine
from walletflow.db.migrate import upgrade
from walletflow.ledger.service import Ledger
from walletflow.cli_support import echo_json, run_business
from walletflow.recharge.cli import recharge_app
from walletflow.risk.cli import risk_app
from walletflow.settings import get_settings

app = typer.Typer(help="walletflow: real-time wallet billing for AI products.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ledger_app = typer.Typer(help="Ledger checks.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
topup_app = typer.Typer(help="Card top-ups through Stripe (each one a Temporal workflow).", no_args_is_help=True)
review_app = typer.Typer(help="The risk review queue of top-ups.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
app.add_typer(apikey_app, name="apikey")
app.add_typer(topup_app, name="topup")
app.add_typer(review_app, name="review")
app.add_typer(recharge_app, name="recharge")
# Scheduled runs and settlement live in their own module.
from walletflow.cli_schedules import schedules_app, settle_app  # noqa: E402

app.add_typer(schedules_app, name="schedules")
app.add_typer(settle_app, name="settle")
# Stripe-to-wallet migration lives in its own module.
from walletflow.migration.cli import migrate_app  # noqa: E402

app.add_typer(migrate_app, name="migrate")


@app.command("mcp")
def mcp(
    transport: str = typer.Option("stdio", help="stdio (the MCP client starts this command) or http (streamable HTTP)."),
    api_url: str | None = typer.Option(None, help="walletflow API base URL (default WALLETFLOW_MCP_API_URL)."),
    api_key: str | None = typer.Option(None, help="stdio: API key the tools act with (default WALLETFLOW_MCP_API_KEY)."),
    host: str = typer.Option("127.0.0.1", help="http: interface to listen on."),
    port: int | None = typer.Option(None, help="http: port to listen on (default WALLETFLOW_MCP_PORT, 8765)."),
) -> None:
    """Serve the MCP server for AI assistants. Over http every request needs
    'Authorization: Bearer <walletflow API key>'; the endpoint is /mcp."""
    from walletflow.mcp_server.server import run

    settings = get_settings()
    try:
        run(transport, api_url or settings.mcp_api_url, api_key or settings.mcp_api_key or None, host,
            port or settings.mcp_port)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
app.add_typer(risk_app, name="risk")


@apikey_app.command("create")
def apikey_create(
    name: str = typer.Option(..., help="What the key is for."),
    scope: str = typer.Option("admin", help="admin, ingest (events and authorizations) or read."),
) -> None:
    """Create an API key. It is printed once and only its hash is stored."""
    typer.echo(asyncio.run(_create_key(name, scope)))


async def _create_key(name: str, scope: str) -> str:
    from walletflow.auth.service import ApiKeys
    from walletflow.errors import WalletflowError

    engine = create_engine()
    try:
        _, key = await ApiKeys(engine).create(name, scope)
    except WalletflowError as exc:
        raise typer.BadParameter(exc.detail) from exc
    finally:
        await engine.dispose()
    return key


@app.command()
def api(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="Processes (PostgreSQL only; SQLite has one writer)."),
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from walletflow.observability.logs import logging_config

    settings = get_settings()
    uvicorn.run("walletflow.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_config=logging_config(settings.log_level, settings.log_format), access_log=False)


@app.command()
def dev(
    host: str = typer.Option("127.0.0.1", help="Interface for every service."),
    api_port: int = typer.Option(8000, "--api-port", "--port", help="Port for the API (docs at /docs)."),
    temporal_port: int = typer.Option(7233, help="Port for the Temporal dev server's frontend."),
    ui_port: int = typer.Option(8233, help="Port for the Temporal web UI."),
    stripe_port: int = typer.Option(8420, help="Port for the fake Stripe (localstripe), unless a real key is set."),
    data_dir: Path = typer.Option(Path(".walletflow"), help="Temporal's history, the fake Stripe's store, logs."),
    demo: bool = typer.Option(False, "--demo", help="Seed a product, a customer, a paid top-up and usage."),
) -> None:
    """Run the whole stack on embedded defaults: the Temporal dev server (web UI), the database
    (SQLite by default, migrated), the API, the worker and the schedules, and a fake Stripe unless
    WALLETFLOW_STRIPE_API_KEY is set. Prints the URLs and a fresh admin key; Ctrl-C stops it all."""
    from walletflow.devtools.dev import DevError, DevOptions, run
    from walletflow.observability.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    options = DevOptions(host, api_port, temporal_port, ui_port, stripe_port, data_dir, demo)
    try:
        asyncio.run(run(options, echo=typer.echo))
    except DevError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Option("head", help="Alembic revision to migrate to.")) -> None:
    """Migrate the configured database (WALLETFLOW_DATABASE_URL) to the latest schema."""
    upgrade(revision=revision)
    typer.echo(f"database at {_safe_url()} is at revision {revision}")


@ledger_app.command("audit")
def ledger_audit(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Recompute every ledger invariant from the entries; exit 1 if any is broken."""

    async def run() -> dict[str, list[list[str]]]:
        engine = create_engine()
        try:
            report = await Ledger(engine).audit()
        finally:
            await engine.dispose()
        return {name: [[str(v) for v in row] for row in rows] for name, rows in vars(report).items()}

    findings = asyncio.run(run())
    broken = {name: rows for name, rows in findings.items() if rows}
    if as_json:
        typer.echo(json.dumps({"ok": not broken, **findings}, indent=2))
    elif broken:
        for name, rows in broken.items():
            typer.echo(f"{name}: {len(rows)}")
            for row in rows[:20]:
                typer.echo("  " + "  ".join(row))
    else:
        typer.echo("ledger ok: every transaction balances, every balance equals its entries")
    raise typer.Exit(1 if broken else 0)


@app.command()
def worker() -> None:
    """Run the Temporal worker: every workflow and activity on the configured task queue."""
    from worker.main import main

    main()


@topup_app.command("start")
def topup_start(
    customer_id: str = typer.Option(..., help="walletflow customer id (UUID)."),
    amount: int = typer.Option(..., help="Amount in minor units of the currency (2000 = 20.00 USD)."),
    currency: str = typer.Option(..., help="Three-letter currency code charged by Stripe."),
    idempotency_key: str = typer.Option(..., help="Same key and values: the same top-up, never a second one."),
    asset: str | None = typer.Option(None, help="Wallet asset to credit (default: the currency)."),
    mode: str = typer.Option("payment_intent", help="payment_intent (embedded form) or checkout (hosted page)."),
    return_url: str | None = typer.Option(None, help="Mode checkout: where the hosted page sends the payer back."),
) -> None:
    """Start a top-up; prints its id, status, workflow id and the client secret or checkout URL."""
    import uuid

    from walletflow import temporal_client as temporal
    from walletflow.payments.service import TopUps
    from walletflow.payments.stripe_gateway import StripeGateway

    async def run() -> dict[str, object]:
        settings = get_settings()
        engine = create_engine()
        try:
            topups = TopUps(engine)
            top_up, created = await topups.create(
                idempotency_key, uuid.UUID(customer_id), amount, currency, asset, mode, return_url
            )
            client = await temporal.connect(settings)
            handle = await temporal.start_top_up(client, top_up, settings)
            details = await temporal.payment_details(handle, settings.topup_create_wait_s)
            top_up = await topups.get(top_up.id)
            secret = checkout_url = None
            if details is not None:  # read from Stripe: it never passes through workflow history
                gateway = StripeGateway.from_settings(settings)
                secret, checkout_url = await gateway.handoff(details.payment_intent_id, details.checkout_session_id)
        finally:
            await engine.dispose()
        return {
            "id": str(top_up.id), "status": top_up.status, "created": created, "workflow_id": top_up.workflow_id,
            "payment_intent_id": top_up.stripe_payment_intent_id,
            "client_secret": secret, "checkout_url": checkout_url,
        }

    _echo_json(_run_business(run))


@topup_app.command("refund")
def topup_refund(
    top_up_id: str = typer.Argument(..., help="The credited top-up to refund."),
    idempotency_key: str = typer.Option(..., help="Same key and values: the same refund, never a second one."),
    amount: int | None = typer.Option(None, help="Minor units to refund (default: all that is left)."),
    reason: str | None = typer.Option(None, help="Why (a short machine code such as customer_request)."),
) -> None:
    """Refund all or part of a credited top-up: debits the wallet now, Stripe pays it back next."""
    import dataclasses
    import uuid

    from walletflow import temporal_client as temporal
    from walletflow.ledger.service import Ledger
    from walletflow.payments.refunds import Refunds

    async def run() -> dict[str, object]:
        settings = get_settings()
        engine = create_engine()
        try:
            refunds = Refunds(engine, Ledger(engine))
            refund, created = await refunds.create(uuid.UUID(top_up_id), idempotency_key, amount, reason)
            client = await temporal.connect(settings)
            await temporal.start_refund(client, refund.id, refund.customer_id, settings)
            refund = await refunds.get(refund.id)
        finally:
            await engine.dispose()
        return {**dataclasses.asdict(refund), "workflow_id": refund.workflow_id, "created": created}

    _echo_json(_run_business(run))


@topup_app.command("status")
def topup_status(top_up_id: str = typer.Argument(..., help="The top-up id.")) -> None:
    """Print a top-up as stored (status, PaymentIntent, risk decision, credit or refund)."""
    import uuid

    from walletflow.payments.service import TopUps

    async def run() -> dict[str, object]:
        engine = create_engine()
        try:
            top_up = await TopUps(engine).get(uuid.UUID(top_up_id))
        finally:
            await engine.dispose()
        return _top_up_json(top_up)

    _echo_json(_run_business(run))


@review_app.command("list")
def review_list(limit: int = typer.Option(50, help="At most this many, oldest first.")) -> None:
    """List top-ups waiting for an operator's decision."""
    from walletflow.payments.service import TopUps
    from walletflow.risk.topups import risk_details

    async def run() -> list[dict[str, object]]:
        engine = create_engine()
        try:
            queue = await TopUps(engine).list_in_review(limit)
            details = await risk_details(engine, [t.id for t in queue])
            # Score, reasons, and the explanations and feature values behind them.
            return [{**_top_up_json(t), "risk_details": details.get(t.id)} for t in queue]
        finally:
            await engine.dispose()

    _echo_json(_run_business(run))


@review_app.command("approve")
def review_approve(
    top_up_id: str = typer.Argument(...), note: str | None = typer.Option(None, help="Why (kept in the workflow).")
) -> None:
    """Approve a top-up in review: its workflow credits the wallet."""
    _echo_json(_run_business(lambda: _review(top_up_id, True, note)))


@review_app.command("reject")
def review_reject(
    top_up_id: str = typer.Argument(...), note: str | None = typer.Option(None, help="Why (kept in the workflow).")
) -> None:
    """Reject a top-up in review: its workflow refunds the payment."""
    _echo_json(_run_business(lambda: _review(top_up_id, False, note)))


async def _review(top_up_id: str, approve: bool, note: str | None) -> dict[str, object]:
    import uuid

    from walletflow import temporal_client as temporal
    from walletflow.payments.service import TopUps

    engine = create_engine()
    try:
        top_up = await TopUps(engine).require_in_review(uuid.UUID(top_up_id))
        client = await temporal.connect()
        await temporal.signal_review(client, top_up.id, top_up.workflow_id, approve, note)
    finally:
        await engine.dispose()
    return {"id": str(top_up.id), "decision": "approve" if approve else "reject", "workflow_id": top_up.workflow_id}


def _top_up_json(top_up: object) -> dict[str, object]:
    import dataclasses

    return {k: (str(v) if v is not None and not isinstance(v, (int, list, str)) else v)
            for k, v in dataclasses.asdict(top_up).items()}  # type: ignore[call-overload]


_run_business = run_business
_echo_json = echo_json


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)


if __name__ == "__main__":
    app()
