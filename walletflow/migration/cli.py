"""``walletflow migrate stripe``: dry run (default), real run, report, cut-over (registered in cli.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import typer

from walletflow.settings import get_settings

migrate_app = typer.Typer(help="Move customers and credit from another billing system.", no_args_is_help=True)


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))
    sys.stdout.flush()  # before the Temporal SDK can crash at exit (sdk-python#300)


@migrate_app.command("stripe")
def migrate_stripe(
    dry_run: bool = typer.Option(True, "--dry-run/--real", help="--dry-run (default) computes the report and "
                                                                 "changes nothing; --real imports."),
    enable_auto_recharge: bool = typer.Option(False, help="Imported auto-recharge policies start enabled."),
    cut_over: bool = typer.Option(False, "--cut-over", help="Cut over a completed real run (--migration-id): "
                                                             "bill the final metered period, cancel at period end."),
    migration_id: str | None = typer.Option(None, help="An existing run: show its report (or cut it over)."),
    wait: bool = typer.Option(True, help="Wait for the end, showing progress."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Migrate the Stripe account's customers, credit balances, credit grants and metered prices."""
    from walletflow import temporal_client
    from walletflow.db.engine import create_engine
    from walletflow.errors import WalletflowError
    from walletflow.migration.service import Migrations

    settings = get_settings()

    async def run() -> dict[str, Any]:
        engine = create_engine(settings=settings)
        migrations = Migrations(engine)
        try:
            if migration_id is not None:
                existing = uuid.UUID(migration_id)
                if cut_over:
                    client = await temporal_client.connect(settings)
                    workflow = await temporal_client.start_stripe_cutover(client, migrations, settings, existing)
                    if wait:
                        await client.get_workflow_handle(workflow).result()
                    return {"migration": _view(await migrations.get(existing), None), "cutover_workflow_id": workflow}
                run = await migrations.get(existing)
            elif cut_over:
                raise typer.BadParameter("--cut-over needs --migration-id of a completed real run")
            else:
                client = await temporal_client.connect(settings)
                run, _ = await temporal_client.start_stripe_migration(client, migrations, settings, dry_run=dry_run,
                                                     enable_auto_recharge=enable_auto_recharge)
                typer.echo(f"started {run.workflow_id} ({'dry run' if run.dry_run else 'REAL run'})", err=True)
            while wait and run.status == "running":
                await asyncio.sleep(1)
                run = await migrations.get(run.id)
                typer.echo(f"\r{time.strftime('%H:%M:%S')} pages {run.pages_done}  customers {run.customers_done}",
                           err=True, nl=False)
            if wait:
                typer.echo("", err=True)
            report = run.report if run.status == "completed" else await migrations.report(run.id)
            return _view(run, report)
        except WalletflowError as exc:
            typer.echo(f"error: {exc.code}: {exc.detail}", err=True)
            raise typer.Exit(1) from exc
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(run())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json or "report" not in result or result.get("report") is None:
        _echo_json(result)
    else:
        typer.echo(render_table(result))
        sys.stdout.flush()
    failed = result.get("status") == "failed" or (result.get("migration") or {}).get("status") == "failed"
    raise typer.Exit(1 if failed else 0)


def _view(run: Any, report: dict[str, Any] | None) -> dict[str, Any]:
    out = {"id": str(run.id), "workflow_id": run.workflow_id, "dry_run": run.dry_run, "status": run.status,
           "pages_done": run.pages_done, "customers_done": run.customers_done, "error": run.error,
           "cutover_status": run.cutover_status, "cutover_report": run.cutover_report}
    if report is not None:
        out["report"] = report
    return out


def render_table(result: dict[str, Any]) -> str:
    """The report for people: counts, amounts per asset, differences, debts, unmapped prices."""
    report = result["report"]
    lines = [f"migration {result['id']}  {'DRY RUN' if result['dry_run'] else 'real run'}  status {result['status']}",
             ""]
    counts = report["counts"]
    lines.append("customers   " + "  ".join(f"{k} {v}" for k, v in counts.items() if v or k == "customers"))
    lines.append("")
    lines.append(f"{'asset':8} {'imported':>14} {'balances':>14} {'grants':>14} {'stripe credit':>14} {'walletflow':>14}")
    for asset, a in report["amounts"].items():
        lines.append(f"{asset:8} {a.get('imported', 0):>14} {a.get('balances', 0):>14} {a.get('credit_grants', 0):>14} "
                     f"{a.get('stripe_credit', 0):>14} {a.get('walletflow_credit', 0):>14}")
    lines.append("")
    lines.append(f"differences: {counts['differences']}" + ("  (none: Stripe and walletflow agree to the cent)"
                                                              if not counts["differences"] else ""))
    for d in report["differences"][:50]:
        lines.append(f"  {d['stripe_customer_id']}  stripe {d['stripe']}  walletflow {d['walletflow']}")
    if report["debts"]:
        lines.append(f"debts (not imported): {len(report['debts'])}")
        for d in report["debts"][:50]:
            lines.append(f"  {d['stripe_customer_id']}  {d.get('asset', '?')} {d.get('amount', d.get('balance'))}")
    prices = report["prices"]
    lines.append(f"metered prices mapped: {len(prices.get('mapped', []))}   unmapped: {len(prices.get('unmapped', []))}")
    for p in prices.get("mapped", [])[:50]:
        lines.append(f"  {p['price']} -> {p['product_code']} v{p.get('version') or '?'} ({p['event_type']}) {p['status']}")
    for p in prices.get("unmapped", [])[:50]:
        lines.append(f"  UNMAPPED {p['price']}: {p['reason']}")
    ar = report["auto_recharge"]
    lines.append(f"auto-recharge policies: created {ar['created']}  would create {ar['would_create']}  "
                 f"existing {ar['existing']}  skipped {ar['skipped']}  (enabled: {ar['enabled_requested']})")
    return "\n".join(lines)
