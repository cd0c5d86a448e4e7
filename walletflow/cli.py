"""The ``walletflow`` command line."""

from __future__ import annotations

import asyncio
import json

import typer

from walletflow.db.engine import create_engine
from walletflow.db.migrate import upgrade
from walletflow.ledger.service import Ledger
from walletflow.settings import get_settings

app = typer.Typer(help="walletflow: real-time wallet billing for AI products.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ledger_app = typer.Typer(help="Ledger checks.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
app.add_typer(apikey_app, name="apikey")


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

    uvicorn.run("walletflow.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=False)


@app.command()
def dev(
    host: str = typer.Option("127.0.0.1", help="Interface for the API."),
    port: int = typer.Option(8000, help="Port for the API."),
) -> None:
    """Run walletflow on embedded defaults: migrate the database (SQLite by default), create an
    admin key and serve the API. Ctrl-C stops it."""
    upgrade()
    key = asyncio.run(_create_key("walletflow dev", "admin"))
    typer.echo(f"database:  {_safe_url()}")
    typer.echo(f"API docs:  http://{host}:{port}/docs")
    typer.echo(f"admin key: {key}")
    api(host=host, port=port, workers=1)


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


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)


if __name__ == "__main__":
    app()
