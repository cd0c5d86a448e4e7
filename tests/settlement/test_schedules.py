"""``walletflow schedules apply|list`` on the Temporal dev server: every schedule created, then
updated in place (twice = the same result), intervals from the settings, an operator's pause
kept, overlap skipped; a triggered schedule runs its workflow on the worker."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.services import Stack
from walletflow import temporal_schedules
from walletflow.settlement.contracts import GrantSweep

pytestmark = pytest.mark.asyncio(loop_scope="session")
REPO = Path(__file__).resolve().parents[2]
EXPECTED = {
    "recharge-sweep": "AutoRechargeSweepWorkflow",
    "settlement": "UsageSettlementWorkflow",
    "grant-expiry": "GrantExpiryWorkflow",
    "webhook-dispatch": "WebhookDispatchWorkflow",
    "payments-sweep": "PaymentsSweepWorkflow",
}


async def walletflow_cli(stack: Stack, env: dict[str, str], *args: str) -> Any:
    """The CLI as a separate process; its printed JSON is the answer (the exit code is not relied
    on: the Temporal SDK can crash at interpreter exit after using a client, sdk-python#300)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "walletflow.cli", *args, cwd=REPO, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out.strip(), f"no output from walletflow {' '.join(args)}: {err.decode()[-2000:]}"
    return json.loads(out)


async def test_apply_creates_then_updates_every_schedule_and_list_shows_next_runs(stack: Stack) -> None:
    prefix = f"wf-test-{uuid.uuid4().hex[:8]}"
    hours = {"schedule_recharge_sweep_interval_s": 3600, "schedule_settlement_interval_s": 7200,
             "schedule_grant_expiry_interval_s": 10800, "schedule_webhook_dispatch_interval_s": 14400,
             "schedule_payments_sweep_interval_s": 18000}
    settings = stack.settings.model_copy(update={"schedule_id_prefix": prefix, **hours})
    env = {"WALLETFLOW_TEMPORAL_ADDRESS": settings.temporal_address, "WALLETFLOW_TASK_QUEUE": settings.task_queue,
           "WALLETFLOW_SCHEDULE_ID_PREFIX": prefix, "WALLETFLOW_DATABASE_URL": settings.database_url,
           **{f"WALLETFLOW_{k.upper()}": str(v) for k, v in hours.items()}}
    try:
        first = await temporal_schedules.apply(stack.client, settings)
        assert {(a.schedule_id, a.workflow, a.action) for a in first} == {
            (f"{prefix}-{name}", workflow, "created") for name, workflow in EXPECTED.items()}

        # Applied again (from the command line, configured by the environment): updated in place.
        again = await walletflow_cli(stack, env, "schedules", "apply", "--json")
        assert sorted((a["schedule_id"], a["action"]) for a in again) == sorted(
            (f"{prefix}-{name}", "updated") for name in EXPECTED)

        listed = {s["id"]: s for s in await walletflow_cli(stack, env, "schedules", "list", "--json")}
        assert set(listed) == {f"{prefix}-{name}" for name in EXPECTED}
        for name, workflow in EXPECTED.items():
            s = listed[f"{prefix}-{name}"]
            interval = hours[f"schedule_{name.replace('-', '_')}_interval_s"]
            assert (s["applied"], s["workflow"], s["task_queue"], s["interval_s"], s["overlap"], s["paused"]) == (
                True, workflow, settings.task_queue, interval, "SKIP", False)
            runs = [dt.datetime.fromisoformat(t) for t in s["next_runs"]]
            assert len(runs) == 3 and runs[0] > dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
            assert {(b - a).total_seconds() for a, b in itertools.pairwise(runs)} == {interval}

        # An operator pauses settlement; a new interval is applied; the pause is kept.
        await stack.client.get_schedule_handle(f"{prefix}-settlement").pause(note="investigating a leak")
        changed = settings.model_copy(update={"schedule_settlement_interval_s": 1800})
        await temporal_schedules.apply(stack.client, changed)
        now = {s["id"]: s for s in await temporal_schedules.describe(stack.client, changed)}
        assert (now[f"{prefix}-settlement"]["interval_s"], now[f"{prefix}-settlement"]["paused"]) == (1800, True)
        assert len(now) == len(EXPECTED)  # still exactly one schedule each

        # Triggered now, the grant-expiry schedule starts its workflow, which the worker runs.
        handle = stack.client.get_schedule_handle(f"{prefix}-grant-expiry")
        await handle.trigger()
        deadline = time.monotonic() + 30
        while not (desc := await handle.describe()).info.recent_actions:
            assert time.monotonic() < deadline, "the triggered schedule started nothing"
            await asyncio.sleep(0.2)
        started = desc.info.recent_actions[-1].action
        assert started.workflow_id.startswith(f"{prefix}-grant-expiry")  # type: ignore[attr-defined]
        result = await stack.client.get_workflow_handle(started.workflow_id).result()  # type: ignore[attr-defined]
        assert isinstance(GrantSweep.model_validate(result), GrantSweep)
    finally:
        await temporal_schedules.delete_all(stack.client, settings)
    gone = await temporal_schedules.describe(stack.client, settings)
    assert [s["applied"] for s in gone] == [False] * len(EXPECTED)
