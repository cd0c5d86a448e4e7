"""``walletflow migrate stripe``: a dry run started from the command line shows its progress and
the report (a table for people, JSON for machines), and the cut-over refuses a dry run."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.migration.helpers import MigrationStack, fresh_localstripe, migration_stack
from tests.services import Stack
from walletflow.migration.service import counts_snapshot

pytestmark = pytest.mark.asyncio(loop_scope="session")
REPO = Path(__file__).resolve().parents[2]


async def walletflow(ms: MigrationStack, *args: str) -> tuple[str, str]:
    """Run the CLI as an operator would (configured by WALLETFLOW_* only). The exit code is not
    relied on: the Temporal SDK can crash at interpreter exit after client use (sdk-python#300)."""
    env = {
        **os.environ,
        "WALLETFLOW_DATABASE_URL": ms.settings.database_url,
        "WALLETFLOW_TEMPORAL_ADDRESS": ms.settings.temporal_address,
        "WALLETFLOW_TASK_QUEUE": ms.settings.task_queue,
        "WALLETFLOW_STRIPE_API_BASE": ms.settings.stripe_api_base or "",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "walletflow.cli", "migrate", "stripe", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return out.decode(), err.decode()


async def test_a_dry_run_from_the_cli_shows_progress_and_the_report(stack: Stack, tmp_path: Path) -> None:
    with fresh_localstripe(tmp_path) as url:
        async with migration_stack(stack, url) as ms:
            for i in range(25):
                await ms.account.customer(balance=-(1000 + i))
            await ms.account.customer(balance=300)  # a debt
            before = await counts_snapshot(stack.engine)

            out, err = await walletflow(ms)  # the default is a dry run
            assert "started migration-stripe-" in err and "(dry run)" in err
            assert "pages 3  customers 26" in err, err  # progress lines while it ran
            assert "DRY RUN" in out and "status completed" in out
            assert "differences: 0" in out and "debts (not imported): 1" in out
            assert await counts_snapshot(stack.engine) == before

            migration_id = out.split()[1]
            shown, _ = await walletflow(ms, "--migration-id", migration_id, "--json")
            report = json.loads(shown)["report"]
            assert report["counts"]["would_create"] == 26
            assert report["amounts"]["USD"]["imported"] == sum(1000 + i for i in range(25))

            _, refused_err = await walletflow(ms, "--cut-over", "--migration-id", migration_id)
            assert "validation_error" in refused_err and "dry run" in refused_err
