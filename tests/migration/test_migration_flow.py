"""The Stripe migration end to end, on each backend, against a fresh localstripe account through
the official SDK: a dry run changes nothing on either side, a real run imports with zero
differences, a second run changes nothing, the cut-over bills and cancels once, 429s are retried."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.migration.helpers import Account, MigrationStack, fresh_localstripe, migration_stack
from tests.services import Stack
from walletflow.migration.service import counts_snapshot, customer_links, price_links
from walletflow.recharge.service import Recharges

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def seed_small(account: Account, ledger: Any) -> dict[str, Any]:
    """Five customers that exercise every rule, and prices of each kind."""
    ids: dict[str, Any] = {}
    ids["credit"] = await account.customer(balance=-1500)           # $15.00 of credit
    ids["debt"] = await account.customer(balance=700)               # owes $7.00: reported, not imported
    ids["grants"] = await account.customer(card=True)
    in_30_days = int(time.time()) + 30 * 86400
    ids["paid_grant"] = await account.grant(ids["grants"], 1000, category="paid", priority=10, expires_at=in_30_days)
    ids["promo_grant"] = await account.grant(ids["grants"], 1000, category="promotional")
    await account.consume(ids["promo_grant"], 200)                   # 800 left
    ids["voided"] = await account.customer()
    ids["voided_grant"] = await account.grant(ids["voided"], 500)
    await account.void(ids["voided_grant"])
    ids["existing"] = await account.customer(balance=-250)
    # Already a walletflow customer under its Stripe id: linked, not duplicated.
    ids["existing_wf"] = (await ledger.create_customer(ids["existing"], name="kept as is")).id

    meter = await account.meter(f"tokens_{uuid.uuid4().hex[:6]}")
    ids["event_type"] = (await account.client.v1.billing.meters.retrieve_async(meter)).event_name
    ids["per_unit"] = (await account.price(product_data={"name": "API"}, unit_amount_decimal="0.25",
                                           recurring={"interval": "month", "usage_type": "metered", "meter": meter}))
    ids["licensed"] = await account.price(product_data={"name": "Seat"}, unit_amount=2000,
                                          recurring={"interval": "month", "usage_type": "licensed"})
    ids["no_meter"] = await account.price(product_data={"name": "Legacy"}, unit_amount=3,
                                          recurring={"interval": "month", "usage_type": "metered"})
    ids["transform"] = await account.price(product_data={"name": "Packs"}, unit_amount=100,
                                           transform_quantity={"divide_by": 1000, "round": "up"},
                                           recurring={"interval": "month", "usage_type": "metered", "meter": meter})
    ids["subscription"] = await account.subscribe(ids["credit"], ids["per_unit"]["id"])
    return ids


async def test_dry_run_changes_nothing_then_real_run_imports_with_zero_differences(
    stack: Stack, tmp_path: Path
) -> None:
    with fresh_localstripe(tmp_path) as url:
        async with migration_stack(stack, url) as ms:
            ids = await seed_small(ms.account, stack.ledger)
            stripe_before, db_before = await ms.account.snapshot(), await counts_snapshot(stack.engine)

            dry = await ms.run(dry_run=True)
            report = dry["report"]
            assert await ms.account.snapshot() == stripe_before            # Stripe untouched
            assert await counts_snapshot(stack.engine) == db_before        # walletflow untouched
            assert report["dry_run"] is True
            c = report["counts"]
            assert (c["customers"], c["would_create"], c["would_link"], c["debts"]) == (5, 4, 1, 1)
            assert c["grants_would_import"] == 4 and c["differences"] == 0
            assert report["auto_recharge"]["would_create"] == 1
            assert report["amounts"]["USD"]["imported"] == 1500 + 1000 + 800 + 250
            assert {p["price"] for p in report["unmapped_prices"]} == {
                ids["licensed"]["id"], ids["no_meter"]["id"], ids["transform"]["id"]}
            assert [p["status"] for p in report["prices"]["mapped"]] == ["would_create"]

            real = await ms.run(dry_run=False)
            report = real["report"]
            c = report["counts"]
            assert (c["customers"], c["created"], c["linked"], c["grants_imported"]) == (5, 4, 1, 4)
            assert c["differences"] == 0 and report["differences"] == []
            assert report["debts"] == [{"stripe_customer_id": ids["debt"], "reason": "debt", "asset": "USD",
                                        "amount": 700}]
            usd = report["amounts"]["USD"]
            assert usd["imported"] == usd["stripe_credit"] == usd["walletflow_credit"] == 3550
            assert await ms.account.snapshot() == stripe_before            # a real run leaves Stripe alone too

            # Each customer's wallet, to the cent, with Stripe's priority, expiry and category kept.
            links = await _links(ms)
            assert set(links) == {ids[k] for k in ("credit", "debt", "grants", "voided", "existing")}
            assert links[ids["existing"]] == ids["existing_wf"]
            assert (await stack.ledger.balance(links[ids["credit"]], "USD")).posted == 1500
            assert (await stack.ledger.balance(links[ids["debt"]], "USD")).posted == 0
            assert (await stack.ledger.balance(links[ids["voided"]], "USD")).posted == 0
            assert (await stack.ledger.balance(links[ids["existing"]], "USD")).posted == 250
            grants = sorted((g.source, g.priority, g.amount, g.expires_at is not None)
                            for g in await stack.ledger.grants(links[ids["grants"]]))
            assert grants == [("paid", 10, 1000, True), ("promotional", 50, 800, False)]
            [balance_grant] = await stack.ledger.grants(links[ids["credit"]])
            assert (balance_grant.source, balance_grant.priority) == ("migrated", 101)
            created = await stack.ledger.get_customer(links[ids["credit"]])
            assert created.external_id == ids["credit"] and created.stripe_customer_id == ids["credit"]

            # The metered price became a draft version of a walletflow product; the others did not.
            async with stack.engine.connect() as conn:
                [link] = (await conn.execute(select(price_links).where(
                    price_links.c.stripe_price_id.in_([ids[k]["id"] for k in ("per_unit", "licensed", "no_meter")])))).all()
            version = await stack.app.state.services.catalog.get_version(link.product_code, link.version)
            assert version.status == "draft"
            assert version.prices == [
                {"event_type": ids["event_type"], "asset": "USD", "model": "per_unit", "quantity_field": "tokens",
                 "unit_price": "0.25"}]
            # The default payment method is kept for the auto-recharge import.
            async with stack.engine.connect() as conn:
                pm = (await conn.execute(select(customer_links.c.default_payment_method).where(
                    customer_links.c.stripe_customer_id == ids["grants"]))).scalar_one()
            assert pm is not None and pm.startswith("pm_")
            # ... and became an auto-recharge policy of the USD wallet, disabled (not asked to enable).
            assert (report["auto_recharge"]["created"], report["auto_recharge"]["payment_methods"]) == (1, 1)
            [policy] = await Recharges(stack.engine).list_policies(links[ids["grants"]])
            assert (policy.asset, policy.payment_method_id, policy.enabled) == ("USD", pm, False)
            assert (policy.threshold, policy.target) == (ms.settings.migration_recharge_threshold,
                                                         ms.settings.migration_recharge_target)
            assert (await stack.ledger.audit()).ok


async def test_a_second_run_changes_nothing(stack: Stack, tmp_path: Path) -> None:
    with fresh_localstripe(tmp_path) as url:
        async with migration_stack(stack, url) as ms:
            await seed_small(ms.account, stack.ledger)
            first = await ms.run(dry_run=False)
            assert first["report"]["counts"]["grants_imported"] == 4
            db_after_first, links = await counts_snapshot(stack.engine), await _links(ms)
            wallets = {cid: await stack.ledger.wallet(cid) for cid in links.values()}

            second = await ms.run(dry_run=False)
            c = second["report"]["counts"]
            assert await counts_snapshot(stack.engine) == db_after_first
            assert await _links(ms) == links
            assert {cid: await stack.ledger.wallet(cid) for cid in links.values()} == wallets
            assert (c["already_linked"], c["grants_imported"], c["grants_already_imported"], c["differences"]) == (5, 0, 4, 0)
            assert second["report"]["amounts"]["USD"]["imported"] == 0
            assert [p["status"] for p in second["report"]["prices"]["mapped"]] == ["linked"]
            assert (second["report"]["auto_recharge"]["created"], second["report"]["auto_recharge"]["existing"]) == (0, 1)


async def test_cut_over_bills_and_cancels_each_metered_subscription_once(stack: Stack, tmp_path: Path) -> None:
    with fresh_localstripe(tmp_path) as url:
        async with migration_stack(stack, url) as ms:
            ids = await seed_small(ms.account, stack.ledger)
            licensed_only = await ms.account.subscribe(ids["grants"], ids["licensed"]["id"])
            dry = await ms.run(dry_run=True)
            refused = await ms.http.post(f"/v1/migrations/{dry['id']}/cut-over")
            assert refused.status_code == 422 and refused.json()["code"] == "validation_error"

            real = await ms.run(dry_run=False)
            params: Any = {"customer": ids["credit"], "subscription": ids["subscription"]}
            before = {i.id for i in (await ms.account.client.v1.invoices.list_async(params=params)).data}
            for _ in range(2):  # the second cut-over changes nothing
                started = await ms.http.post(f"/v1/migrations/{real['id']}/cut-over")
                assert started.status_code == 202, started.text
                handle = stack.client.get_workflow_handle(started.json()["workflow_id"])
                await handle.result()
                subs = {s.id: s for s in (await ms.account.client.v1.subscriptions.list_async()).data}
                assert subs[ids["subscription"]].cancel_at_period_end is True
                assert subs[licensed_only].cancel_at_period_end is False   # not a mapped metered price
                invoices = [i for i in (await ms.account.client.v1.invoices.list_async(params=params)).data
                            if i.id not in before]
                assert len(invoices) == 1  # the final invoice, made once
            run = (await ms.http.get(f"/v1/migrations/{real['id']}")).json()
            assert run["cutover_status"] == "completed"
            assert run["cutover_report"]["details"] == [{"subscription": ids["subscription"], "customer": ids["credit"],
                                                         "invoice": invoices[0].id, "status": "done"}]


async def test_rate_limited_calls_are_retried(stack: Stack, tmp_path: Path) -> None:
    with fresh_localstripe(tmp_path) as url:
        async with migration_stack(stack, url) as ms:
            for i in range(12):
                await ms.account.customer(balance=-(100 + i))
            await ms.account.rate_limit(6)  # the next six calls answer 429
            run = await ms.run(dry_run=False)
            assert (await ms.account.rate_limit())["served"] == 6
            c = run["report"]["counts"]
            assert (c["customers"], c["grants_imported"], c["differences"]) == (12, 12, 0)
            assert run["report"]["amounts"]["USD"]["imported"] == sum(100 + i for i in range(12))


async def test_bad_input_and_unknown_runs(stack: Stack, tmp_path: Path) -> None:
    with fresh_localstripe(tmp_path) as url:
        async with migration_stack(stack, url, worker=False) as ms:
            before = await counts_snapshot(stack.engine)
            bad = await ms.http.post("/v1/migrations/stripe", json={"dry_run": "no"})
            assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
            missing = await ms.http.get(f"/v1/migrations/{uuid.uuid4()}")
            assert missing.status_code == 404 and missing.json()["code"] == "not_found"
            cut = await ms.http.post(f"/v1/migrations/{uuid.uuid4()}/cut-over")
            assert cut.status_code == 404
            assert await counts_snapshot(stack.engine) == before


async def _links(ms: MigrationStack) -> dict[str, uuid.UUID]:
    async with ms.stack.engine.connect() as conn:
        return {r.stripe_customer_id: r.customer_id for r in await conn.execute(select(customer_links))}

