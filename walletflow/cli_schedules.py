"""``walletflow schedules apply|list`` and ``walletflow settle run|show`` (registered in cli.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import typer

from walletflow.settings import get_settings

schedules_app = typer.Typer(help="Temporal Schedules of the scheduled runs.", no_args_is_help=True)
settle_app = typer.Typer(help="Usage settlement: leakage reports, usage scoring, postpaid invoices.",
                         no_args_is_help=True)


def _echo(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))
    # The Temporal SDK can crash at interpreter exit after client use (sdk-python#300).
    sys.stdout.flush()


@schedules_app.command("apply")
def schedules_apply(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create or update every schedule (recharge sweep, settlement, grant expiry, webhook
    dispatch) with the intervals from the settings. Safe to run any number of times."""
    from walletflow import temporal_client, temporal_schedules

    async def run() -> list[dict[str, Any]]:
        settings = get_settings()
        client = await temporal_client.connect(settings)
        return [vars(a) for a in await temporal_schedules.apply(client, settings)]

    applied = asyncio.run(run())
    if as_json:
        _echo(applied)
        return
    for a in applied:
        typer.echo(f"{a['action']:8} {a['schedule_id']:32} {a['workflow']:28} every {a['interval_s']} s")
    sys.stdout.flush()


@schedules_app.command("list")
def schedules_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show each schedule as Temporal has it, with its next run times."""
    from walletflow import temporal_client, temporal_schedules

    async def run() -> list[dict[str, Any]]:
        settings = get_settings()
        client = await temporal_client.connect(settings)
        return await temporal_schedules.describe(client, settings)

    found = asyncio.run(run())
    if as_json:
        _echo(found)
        return
    for s in found:
        if not s["applied"]:
            typer.echo(f"{s['id']:32} not applied (run `walletflow schedules apply`)")
            continue
        state = "paused" if s["paused"] else "active"
        typer.echo(f"{s['id']:32} {s['workflow']:28} every {s['interval_s']} s  {state}  "
                   f"next: {', '.join(s['next_runs']) or '-'}  last: {s['last_run'] or '-'}")
    sys.stdout.flush()


@settle_app.command("run")
def settle_run(
    period: str | None = typer.Option(None, help="2026-11-27 (a day) or 2026-11-27T13:00Z (an hour); "
                                                  "default: the newest closed period."),
    wait: bool = typer.Option(True, help="Wait for the report."),
) -> None:
    """Settle one period now (workflow ``settlement-{period}``); prints its report."""
    import datetime as dt

    from temporalio.common import WorkflowIDConflictPolicy

    from walletflow import temporal_client
    from walletflow.settlement.contracts import SettlementInput, SettlementOutcome
    from walletflow.settlement.periods import Period, last_closed

    settings = get_settings()
    try:
        key = Period.parse(period).key if period else last_closed(
            dt.datetime.now(dt.UTC), "hour" if settings.settlement_period == "hour" else "day",
            dt.timedelta(seconds=settings.settlement_grace_s),
        ).key
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    async def run() -> dict[str, Any]:
        client = await temporal_client.connect(settings)
        handle = await client.start_workflow(
            "UsageSettlementWorkflow", SettlementInput(period=key), id=f"settlement-{key}",
            task_queue=settings.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            result_type=SettlementOutcome,
        )
        if not wait:
            return {"workflow_id": handle.id, "period": key}
        outcome = await handle.result()
        return {"workflow_id": handle.id, **outcome.model_dump()}

    _echo(asyncio.run(run()))


@settle_app.command("show")
def settle_show(period: str = typer.Argument(..., help="The period's key, as in the report.")) -> None:
    """Print a period's stored settlement report."""
    from walletflow.db.engine import create_engine
    from walletflow.settlement.service import get_report

    async def run() -> dict[str, Any] | None:
        engine = create_engine()
        try:
            return await get_report(engine, period)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if report is None:
        typer.echo(f"error: no settlement report for {period}", err=True)
        raise typer.Exit(1)
    _echo(report)
