"""What every command group of the CLI shares: running a coroutine with typed business errors
turned into a clear message and an exit code, and printing JSON safely."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import typer


def run_business(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine; a typed business error becomes ``error: code: detail`` and exit code 1,
    a bad value exit code 2."""
    from walletflow.errors import WalletflowError

    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except WalletflowError as exc:
        typer.echo(f"error: {exc.code}: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))
    # The Temporal SDK can crash at interpreter exit after client use (sdk-python#300): make
    # sure the answer is out before that can happen.
    sys.stdout.flush()
