"""``walletflow topup start|status`` and ``walletflow review list|approve`` as separate processes,
configured only through WALLETFLOW_* variables."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.services import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
REPO = Path(__file__).resolve().parents[2]


async def walletflow(stack: Stack, *args: str) -> Any:
    """Run the CLI and parse what it printed. The exit code is not relied on: the Temporal SDK
    can crash at interpreter exit after using a client (sdk-python#300)."""
    env = {
        **os.environ,
        "WALLETFLOW_DATABASE_URL": stack.settings.database_url,
        "WALLETFLOW_TEMPORAL_ADDRESS": stack.settings.temporal_address,
        "WALLETFLOW_TASK_QUEUE": stack.settings.task_queue,
        # The CLI reads the client secret from Stripe itself (it never travels through Temporal).
        "WALLETFLOW_STRIPE_API_KEY": stack.settings.stripe_api_key,
        "WALLETFLOW_STRIPE_API_BASE": stack.settings.stripe_api_base or "",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "walletflow.cli", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out.strip(), f"no output from walletflow {' '.join(args)}: {err.decode()[-2000:]}"
    return json.loads(out)


async def test_an_operator_starts_a_top_up_and_approves_its_review_from_the_cli(stack: Stack) -> None:
    customer = await stack.new_customer()
    key = f"cli-{uuid.uuid4().hex}"
    started = await walletflow(
        stack, "topup", "start", "--customer-id", str(customer), "--amount", "65000", "--currency", "usd",
        "--idempotency-key", key,
    )
    assert started["status"] == "awaiting_payment" and started["client_secret"] and started["created"] is True

    await stack.pay(started["payment_intent_id"])
    await stack.wait_for(started["id"], "in_review")
    queue = await walletflow(stack, "review", "list", "--limit", "500")
    assert started["id"] in [t["id"] for t in queue]

    decided = await walletflow(stack, "review", "approve", started["id"], "--note", "checked by phone")
    assert decided == {"id": started["id"], "decision": "approve", "workflow_id": started["workflow_id"]}
    await stack.wait_for(started["id"], "succeeded")
    status = await walletflow(stack, "topup", "status", started["id"])
    assert status["status"] == "succeeded" and status["risk_decision"] == "review"
    assert await stack.balance(customer) == 65_000


async def test_an_operator_refunds_part_of_a_top_up_from_the_cli(stack: Stack) -> None:
    customer = await stack.new_customer()
    started = await walletflow(
        stack, "topup", "start", "--customer-id", str(customer), "--amount", "2500", "--currency", "usd",
        "--idempotency-key", f"cli-{uuid.uuid4().hex}",
    )
    await stack.pay(started["payment_intent_id"])
    await stack.wait_for(started["id"], "succeeded")

    key = f"cli-refund-{uuid.uuid4().hex}"
    args = ("topup", "refund", started["id"], "--idempotency-key", key, "--amount", "1000", "--reason", "goodwill")
    refund = await walletflow(stack, *args)
    assert refund["amount"] == 1000 and refund["created"] is True
    assert refund["workflow_id"] == f"topup-refund-{refund['id']}"
    again = await walletflow(stack, *args)
    assert again["id"] == refund["id"] and again["created"] is False
    assert await stack.balance(customer) == 1500
    outcome = await stack.client.get_workflow_handle(refund["workflow_id"]).result()
    assert outcome["status"] == "succeeded"


async def test_a_checkout_top_up_from_the_cli_prints_the_hosted_page(stack: Stack) -> None:
    customer = await stack.new_customer()
    started = await walletflow(
        stack, "topup", "start", "--customer-id", str(customer), "--amount", "900", "--currency", "usd",
        "--idempotency-key", f"cli-{uuid.uuid4().hex}", "--mode", "checkout",
        "--return-url", "https://platform.example/back",
    )
    assert started["checkout_url"].startswith("https://") and started["client_secret"] is None
