"""The Stripe-to-wallet migration: runs, pages of customers, prices, the report, cut-over.

Every write is idempotent on a Stripe id, so a page processed twice (a retried activity after a
worker crash) or a whole second run changes nothing more:

- the walletflow customer: ``stripe_customer_links`` (unique Stripe id), then the ledger's own
  ``create_customer`` (idempotent on ``external_id`` = the Stripe customer id);
- every grant: the ledger's idempotency key made from the Stripe object id
  (``migration:stripe:balance:{cus}``, ``migration:stripe:credit_grant:{id}``);
- products and versions: ``stripe_price_links`` (unique Stripe price id), and an identical
  draft version left by a crash is reused instead of creating another;
- the per-customer outcome: ``stripe_migration_items`` keyed by (run, customer), overwritten by
  a retry, so the report (an aggregate of the items) never counts a customer twice.

A dry run takes the same path with every write to customers, grants, assets, products and Stripe
turned off: it writes only its own run row and items (the report).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.catalog.service import Catalog, versions
from walletflow.db.engine import in_transaction
from walletflow.db.types import utcnow
from walletflow.errors import (
    AlreadyExists,
    IdempotencyConflict,
    NotFound,
    ValidationError,
    WalletflowError,
)
from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.postings import CLEARING, PROMOTIONS
from walletflow.ledger.service import Ledger
from walletflow.migration import mapping
from walletflow.migration.models import (
    StripeCustomerLink,
    StripeCutover,
    StripeMigration,
    StripeMigrationItem,
    StripePriceLink,
)
from walletflow.migration.stripe_source import StripeSource
from walletflow.payments import repository as payments_repo
from walletflow.recharge import repository as recharge_repo
from walletflow.recharge.schemas import Consent
from walletflow.recharge.service import Recharges

runs = cast(Table, StripeMigration.__table__)
items = cast(Table, StripeMigrationItem.__table__)
customer_links = cast(Table, StripeCustomerLink.__table__)
price_links = cast(Table, StripePriceLink.__table__)
cutovers = cast(Table, StripeCutover.__table__)
KEY_PREFIX = "migration:stripe:"
#: Customers of one page imported at the same time (the token bucket bounds Stripe anyway).
PAGE_CONCURRENCY = 8
#: Bound on the examples listed in a report (the counts and amounts are always complete).
MAX_REPORT_DETAILS = 1000
#: What the report says about auto-recharge policies.
AUTO_RECHARGE_NOTE = (
    "each Stripe customer's default payment method became an auto-recharge policy of the wallet in "
    "its Stripe currency (threshold, target and caps from the migration_recharge_* settings), "
    "disabled unless the run asked for enabled policies; an existing policy is never replaced"
)


@dataclass(frozen=True)
class RechargeDefaults:
    """The policy imported from a default payment method (minor units)."""

    threshold: int = 500
    target: int = 2000
    daily_cap: int = 20_000
    monthly_cap: int = 100_000


class MigrationNotFound(NotFound):
    pass


@dataclass(frozen=True)
class MigrationInfo:
    id: uuid.UUID
    dry_run: bool
    enable_auto_recharge: bool
    status: str
    cursor: str | None
    pages_done: int
    customers_done: int
    report: dict[str, Any]
    cutover_status: str | None
    cutover_report: dict[str, Any] | None
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def workflow_id(self) -> str:
        return f"migration-stripe-{self.id}"


def _upsert(conn: AsyncConnection, table: Table, values: dict[str, Any], keys: list[str], changes: list[str]) -> Any:
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(table).values(**values)
    return stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in changes})


class Migrations:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], dt.datetime] = utcnow,
                 recharge: RechargeDefaults | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.ledger = Ledger(engine, clock)
        self.catalog = Catalog(engine, clock)
        self.recharges = Recharges(engine, clock)
        self.recharge_defaults = recharge or RechargeDefaults()
        self._assets_ok: set[tuple[str, int]] = set()

    # --- runs -----------------------------------------------------------------------------------

    async def create(self, *, dry_run: bool = True, enable_auto_recharge: bool = False) -> MigrationInfo:
        if not isinstance(dry_run, bool) or not isinstance(enable_auto_recharge, bool):
            raise ValidationError("dry_run and enable_auto_recharge must be true or false")
        now = self.clock()
        migration_id = uuid.uuid4()

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(runs.insert().values(
                id=migration_id, dry_run=dry_run, enable_auto_recharge=enable_auto_recharge, status="running",
                cursor=None, pages_done=0, customers_done=0, report={}, created_at=now, updated_at=now,
            ))

        await in_transaction(self.engine, work)
        return await self.get(migration_id)

    async def get(self, migration_id: uuid.UUID) -> MigrationInfo:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == migration_id))).first()
        if row is None:
            raise MigrationNotFound(f"migration {migration_id} not found")
        return MigrationInfo(
            row.id, row.dry_run, row.enable_auto_recharge, row.status, row.cursor, row.pages_done,
            row.customers_done, row.report or {}, row.cutover_status, row.cutover_report, row.error,
            row.created_at, row.updated_at,
        )

    async def _set(self, migration_id: uuid.UUID, **values: Any) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(update(runs).where(runs.c.id == migration_id).values(**values, updated_at=self.clock()))

        await in_transaction(self.engine, work)

    async def fail(self, migration_id: uuid.UUID, error: str) -> None:
        await self._set(migration_id, status="failed", error=error[:2000])

    # --- prices ---------------------------------------------------------------------------------

    async def map_prices(self, migration_id: uuid.UUID, source: StripeSource) -> dict[str, Any]:
        """Map every metered Price to a walletflow product version (real run) or say what would be
        created (dry run); unmappable prices are listed with their reason, never guessed."""
        run = await self.get(migration_id)
        meters = {m["id"]: m for m in await source.meters()}
        prices = await source.prices()
        unmapped: list[dict[str, Any]] = []
        by_product: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        for price in prices:
            definition, reason = mapping.map_price(price, meters)
            if definition is None:
                unmapped.append({"price": price["id"], "product": price.get("product"), "reason": reason})
                continue
            by_product.setdefault(price["product"], []).append((price, definition))

        async with self.engine.connect() as conn:
            linked = {r.stripe_price_id: r for r in await conn.execute(select(price_links))}
        mapped: list[dict[str, Any]] = []
        for product, pairs in sorted(by_product.items()):
            code = mapping.product_code_for(product)
            if all(p["id"] in linked for p, _ in pairs):
                mapped += [{"price": p["id"], "product_code": linked[p["id"]].product_code,
                            "version": linked[p["id"]].version, "event_type": d["event_type"], "status": "linked"}
                           for p, d in pairs]
                continue
            if run.dry_run:
                mapped += [{"price": p["id"], "product_code": code, "version": None, "event_type": d["event_type"],
                            "status": "linked" if p["id"] in linked else "would_create", "definition": d}
                           for p, d in pairs]
                continue
            try:
                version = await self._create_version(code, product, [d for _, d in pairs])
            except WalletflowError as exc:
                unmapped += [{"price": p["id"], "product": product, "reason": f"{exc.code}: {exc.detail}"}
                             for p, _ in pairs]
                continue
            await self._link_prices(migration_id, code, version, pairs)
            async with self.engine.connect() as conn:
                linked = {r.stripe_price_id: r for r in await conn.execute(select(price_links))}
            mapped += [{"price": p["id"], "product_code": linked[p["id"]].product_code,
                        "version": linked[p["id"]].version, "event_type": d["event_type"],
                        "status": "created" if linked[p["id"]].migration_id == migration_id else "linked"}
                       for p, d in pairs]
        section = {"mapped": mapped, "unmapped": unmapped, "stripe_prices": len(prices)}
        await self._set(migration_id, report={**run.report, "prices": section})
        return section

    async def _create_version(self, code: str, stripe_product: str, definitions: list[dict[str, Any]]) -> int:
        for definition in definitions:
            asset, scale = mapping.asset_for(definition["asset"])
            await self._ensure_asset(asset, scale)
        await self.catalog.create_product(code, f"Stripe {stripe_product}"[:200])
        # A crash between creating the version and linking it left an identical draft: reuse it.
        wanted = await self._normalised(definitions)
        for existing in await self.catalog.list_versions(code):
            if existing.status == "draft" and await self._normalised(existing.prices) == wanted:
                return int(existing.version)
        return int((await self.catalog.create_version(code, definitions)).version)

    @staticmethod
    async def _normalised(prices: Any) -> list[Any]:
        from walletflow.catalog.service import parse_prices

        return sorted((p.model_dump(mode="json", exclude_none=True) for p in parse_prices(
            [p if isinstance(p, dict) else p.model_dump(mode="json", exclude_none=True) for p in prices]
        )), key=repr)

    async def _link_prices(self, migration_id: uuid.UUID, code: str, version: int,
                           pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        async def work(conn: AsyncConnection) -> None:
            for price, definition in pairs:
                await conn.execute(ledger_repo._insert_ignore(conn, price_links).values(
                    stripe_price_id=price["id"], product_code=code, version=version,
                    event_type=definition["event_type"], migration_id=migration_id, created_at=self.clock(),
                ))

        await in_transaction(self.engine, work)

    async def _ensure_asset(self, code: str, scale: int) -> str | None:
        """Create the fiat asset if missing. Returns a reason if an existing one cannot be used."""
        if (code, scale) in self._assets_ok:  # assets are never changed or deleted: safe to cache
            return None
        try:
            await self.ledger.create_asset(code, code, scale, "fiat")
        except AlreadyExists:
            existing = await self.ledger.get_asset(code)
            if existing.scale != scale or existing.kind != "fiat":
                return f"asset {code} exists with scale {existing.scale} ({existing.kind}); Stripe uses {scale}"
        self._assets_ok.add((code, scale))
        return None

    async def _asset_problem(self, code: str, scale: int) -> str | None:
        """Dry run: the same check, without creating anything."""
        try:
            existing = await self.ledger.get_asset(code)
        except NotFound:
            return None
        if existing.scale != scale or existing.kind != "fiat":
            return f"asset {code} exists with scale {existing.scale} ({existing.kind}); Stripe uses {scale}"
        return None

    # --- customers ------------------------------------------------------------------------------

    async def import_page(
        self, migration_id: uuid.UUID, source: StripeSource, cursor: str | None, pages_done: int, page_size: int,
        progress: Callable[[int], None] = lambda _: None,
    ) -> tuple[str | None, bool, int]:
        """Import (or, dry, plan) one page of Stripe customers after ``cursor``."""
        run = await self.get(migration_id)
        customers, has_more = await source.customers_page(cursor, page_size)
        semaphore = asyncio.Semaphore(PAGE_CONCURRENCY)
        done = 0

        async def one(customer: dict[str, Any]) -> None:
            nonlocal done
            async with semaphore:
                result = await self._customer(run, source, customer)
                await self._store_item(migration_id, customer["id"], result)
            done += 1
            progress(done)

        await asyncio.gather(*(one(c) for c in customers))
        next_cursor = customers[-1]["id"] if customers else cursor

        async def record(conn: AsyncConnection) -> None:
            count = (await conn.execute(select(func.count()).select_from(items)
                                        .where(items.c.migration_id == migration_id))).scalar_one()
            await conn.execute(update(runs).where(runs.c.id == migration_id).values(
                cursor=next_cursor, pages_done=pages_done + 1, customers_done=count, updated_at=self.clock()))

        await in_transaction(self.engine, record)
        return next_cursor, has_more and bool(customers), len(customers)

    async def _store_item(self, migration_id: uuid.UUID, stripe_id: str, result: dict[str, Any]) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(_upsert(conn, items, {
                "migration_id": migration_id, "stripe_customer_id": stripe_id, "result": result,
                "updated_at": self.clock(),
            }, ["migration_id", "stripe_customer_id"], ["result", "updated_at"]))

        await in_transaction(self.engine, work)

    async def _customer(self, run: MigrationInfo, source: StripeSource, customer: dict[str, Any]) -> dict[str, Any]:
        stripe_id = customer["id"]
        now = self.clock()
        result: dict[str, Any] = {"grants": [], "skipped": [], "debt": None, "problems": []}
        settings = customer.get("invoice_settings") or {}
        payment_method = settings.get("default_payment_method")
        if isinstance(payment_method, dict):
            payment_method = payment_method.get("id")
        result["default_payment_method"] = payment_method

        # What Stripe holds for the customer.
        planned: list[mapping.PlannedGrant] = []
        latest = await source.latest_balance_transaction(stripe_id) if customer.get("balance") else None
        balance_grant, debt = mapping.plan_balance(customer, latest["id"] if latest else None)
        if latest:
            result["stripe_balance_transaction"] = latest["id"]
        if balance_grant is not None:
            planned.append(balance_grant)
        if debt is not None:
            result["debt"] = debt
        for grant in await source.credit_grants(stripe_id):
            live = not grant.get("voided_at") and not (grant.get("expires_at") and grant["expires_at"] <= now.timestamp())
            available = await source.grant_available(stripe_id, grant["id"]) if live else None
            plan, reason = mapping.plan_credit_grant(grant, available, now)
            if plan is None:
                result["skipped"].append({"stripe_id": grant["id"], "reason": reason})
            else:
                planned.append(plan)
        # Assets: one per currency; an existing one with another scale is a problem, not a guess.
        usable: list[mapping.PlannedGrant] = []
        for plan in planned:
            _, scale = mapping.asset_for(plan.asset)
            problem = (await self._asset_problem(plan.asset, scale) if run.dry_run
                       else await self._ensure_asset(plan.asset, scale))
            if problem:
                result["skipped"].append({"stripe_id": plan.stripe_id, "reason": f"unmapped: {problem}"})
            else:
                usable.append(plan)
        result["stripe_credit"] = _by_asset((p.asset, p.amount) for p in usable)

        # The walletflow customer.
        customer_id, action = await self._link_customer(run, customer, payment_method)
        result["action"], result["customer_id"] = action, str(customer_id) if customer_id else None

        # The grants.
        walletflow: list[tuple[str, int]] = []
        credited: list[tuple[mapping.PlannedGrant, dict[str, Any], bool]] = []
        existing = await self._migrated_grants(customer_id) if customer_id else {}
        for plan in usable:
            entry = plan.as_json()
            found = existing.pop(plan.key, None)
            if run.dry_run or customer_id is None:
                if found is None:
                    entry["status"] = "would_import"
                    walletflow.append((plan.asset, plan.amount))  # what a real run would put there
                elif found["amount"] == plan.amount:
                    entry["status"] = "already_imported"
                    walletflow.append((found["asset"], found["amount"]))
                else:
                    entry["status"] = "changed_since_import"
                    walletflow.append((found["asset"], found["amount"]))
                result["grants"].append(entry)
                continue
            if found is not None and found["amount"] != plan.amount:
                entry["status"] = "changed_since_import"  # Stripe's side moved after the first import
                walletflow.append((found["asset"], found["amount"]))
                result["grants"].append(entry)
                continue
            try:
                posting = await self.ledger.credit(
                    customer_id, plan.asset, plan.amount, plan.key, source=plan.source, priority=plan.priority,
                    effective_at=plan.effective_at, expires_at=plan.expires_at,
                    counter=PROMOTIONS if plan.source == "promotional" else CLEARING, metadata=plan.metadata,
                )
            except IdempotencyConflict:  # imported before with other terms (e.g. a new expiry)
                entry["status"] = "changed_since_import"
                if found is not None:
                    walletflow.append((found["asset"], found["amount"]))
                result["grants"].append(entry)
                continue
            credited.append((plan, entry, posting.replayed))
        after_all = await self._migrated_grants(customer_id) if credited and customer_id else {}
        for plan, entry, replayed in credited:
            after = after_all.get(plan.key)
            # A replay of a grant this run created (an earlier attempt of this page) still counts
            # as imported by this run; one from an earlier run does not.
            made_here = not replayed or (after is not None and after["created_at"] >= run.created_at)
            entry["status"] = "imported" if made_here else "already_imported"
            # What the wallet holds from this import: the remaining right after a new import (a
            # credit first repays an overdraft), the amount imported when an earlier run did it.
            held = after["remaining"] if (after and not replayed) else (after or {}).get("amount", 0)
            walletflow.append((plan.asset, held))
            result["grants"].append(entry)
        # Migrated grants Stripe no longer shows (voided or used up since the import).
        for key, found in existing.items():
            result["grants"].append({"key": key, "asset": found["asset"], "amount": found["amount"],
                                     "status": "not_at_stripe_any_more"})
            walletflow.append((found["asset"], found["amount"]))
        result["auto_recharge"] = await self._recharge_policy(run, customer, customer_id, payment_method, usable)
        result["walletflow_credit"] = _by_asset(walletflow)
        assets = set(result["stripe_credit"]) | set(result["walletflow_credit"])
        result["difference"] = {a: result["walletflow_credit"].get(a, 0) - result["stripe_credit"].get(a, 0)
                                for a in sorted(assets)
                                if result["walletflow_credit"].get(a, 0) != result["stripe_credit"].get(a, 0)}
        return result

    async def _recharge_policy(
        self, run: MigrationInfo, customer: dict[str, Any], customer_id: uuid.UUID | None,
        payment_method: str | None, grants: list[mapping.PlannedGrant],
    ) -> dict[str, Any] | None:
        """The default payment method as an auto-recharge policy (disabled unless asked)."""
        if not payment_method:
            return None
        # The currency the customer holds credit in, else the customer's Stripe currency.
        currency = grants[0].asset if grants else customer.get("currency")
        if not currency:
            return {"status": "skipped", "reason": "no currency known for the customer at Stripe",
                    "payment_method": payment_method}
        asset, scale = mapping.asset_for(currency)
        out = {"asset": asset, "payment_method": payment_method, "enabled": run.enable_auto_recharge}
        if customer_id is not None:
            try:
                existing = await self.recharges.get_policy(customer_id, asset)
                return {**out, "status": "exists", "enabled": existing.enabled}
            except NotFound:
                pass
        if run.dry_run or customer_id is None:
            return {**out, "status": "would_create"}
        problem = await self._ensure_asset(asset, scale)
        if problem:
            return {**out, "status": "skipped", "reason": problem}
        d = self.recharge_defaults
        created = customer.get("created")
        consent = Consent(
            at=dt.datetime.fromtimestamp(int(created), dt.UTC) if created else run.created_at,
            method="stripe_migration",
            text=f"default payment method {payment_method} saved for off-session use at Stripe "
                 f"(customer {customer['id']}), imported by migration {run.id}",
        )
        await self.recharges.set_policy(
            customer_id, asset=asset, threshold=d.threshold, target=d.target, payment_method_id=payment_method,
            daily_cap=d.daily_cap, monthly_cap=d.monthly_cap, enabled=run.enable_auto_recharge, consent=consent,
        )
        return {**out, "status": "created"}

    async def _link_customer(
        self, run: MigrationInfo, customer: dict[str, Any], payment_method: str | None
    ) -> tuple[uuid.UUID | None, str]:
        """The walletflow customer for a Stripe customer: linked before, found, or created."""
        stripe_id = customer["id"]
        async with self.engine.connect() as conn:
            link = (await conn.execute(select(customer_links).where(
                customer_links.c.stripe_customer_id == stripe_id))).first()
        if link is not None:
            if link.migration_id != run.id:
                return link.customer_id, "already_linked"
            # This run made the link (an earlier attempt of this page): say what it did then.
            row = await self.ledger.get_customer(link.customer_id)
            made_here = row.external_id == stripe_id and row.created_at is not None and row.created_at >= run.created_at
            return link.customer_id, "created" if made_here else "linked"
        found: uuid.UUID | None = None
        async with self.engine.connect() as conn:
            # A customer that already pays through this Stripe customer (top-ups made it).
            found = (await conn.execute(select(ledger_repo.customers.c.id).where(
                ledger_repo.customers.c.stripe_customer_id == stripe_id))).scalar_one_or_none()
        # A customer walletflow made at Stripe itself carries our id in its metadata.
        wf_id = (customer.get("metadata") or {}).get("walletflow_customer_id")
        if wf_id and found is None:
            try:
                found = (await self.ledger.get_customer(uuid.UUID(wf_id))).id
            except (NotFound, ValueError):
                found = None
        action = "linked"
        if found is None:
            try:
                by_external = await self.ledger.find_customer(stripe_id)
            except NotFound:
                by_external = None
            if by_external is not None:
                found = by_external.id
                # Made by an earlier attempt of this page that crashed before linking it.
                if by_external.created_at >= run.created_at and by_external.metadata.get("stripe_customer_id") == stripe_id:
                    action = "created"
        if run.dry_run:
            return found, "would_link" if found else "would_create"
        if found is None:
            metadata = {"stripe_customer_id": stripe_id}
            try:
                found = (await self.ledger.create_customer(
                    stripe_id, name=(customer.get("name") or None), email=(customer.get("email") or None),
                    metadata=metadata)).id
                action = "created"
            except AlreadyExists:  # created meanwhile with other fields: link to it
                found = (await self.ledger.find_customer(stripe_id)).id

        async def work(conn: AsyncConnection) -> Any:
            await conn.execute(ledger_repo._insert_ignore(conn, customer_links).values(
                stripe_customer_id=stripe_id, customer_id=found, default_payment_method=payment_method,
                migration_id=run.id, created_at=self.clock(),
            ))
            # Top-ups and invoices then use the same Stripe customer (and its saved cards).
            await payments_repo.set_stripe_customer_id(conn, found, stripe_id, self.clock())
            return (await conn.execute(select(customer_links).where(
                customer_links.c.stripe_customer_id == stripe_id))).one()

        winner = await in_transaction(self.engine, work)
        if winner.migration_id != run.id:
            action = "already_linked"  # a racing run made it
        elif action == "created" and winner.customer_id != found:
            action = "linked"
        return winner.customer_id, action

    async def _migrated_grants(self, customer_id: uuid.UUID) -> dict[str, dict[str, Any]]:
        g, a = ledger_repo.grants, ledger_repo.accounts
        query = (select(g.c.idempotency_key, g.c.amount, g.c.remaining, g.c.created_at, a.c.asset)
                 .join(a, a.c.id == g.c.account_id)
                 .where(a.c.customer_id == customer_id, g.c.idempotency_key.like(KEY_PREFIX + "%")))
        async with self.engine.connect() as conn:
            return {r.idempotency_key: {"amount": int(r.amount), "remaining": int(r.remaining), "asset": r.asset,
                                       "created_at": r.created_at}
                    for r in await conn.execute(query)}

    # --- report ---------------------------------------------------------------------------------

    async def report(self, migration_id: uuid.UUID) -> dict[str, Any]:
        """The run's report, aggregated from its items (complete counts, bounded examples)."""
        run = await self.get(migration_id)
        counts = {k: 0 for k in ("customers", "created", "linked", "already_linked", "would_create", "would_link",
                                 "grants_imported", "grants_already_imported", "grants_would_import",
                                 "grants_changed_since_import", "grants_skipped", "debts", "differences",
                                 "payment_methods")}
        amounts: dict[str, dict[str, int]] = {}
        differences: list[dict[str, Any]] = []
        debts: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        async with self.engine.connect() as conn:
            result = await conn.stream(select(items.c.stripe_customer_id, items.c.result)
                                       .where(items.c.migration_id == migration_id)
                                       .order_by(items.c.stripe_customer_id))
            async for row in result:
                item, stripe_id = row.result, row.stripe_customer_id
                counts["customers"] += 1
                counts[item["action"]] = counts.get(item["action"], 0) + 1
                counts["payment_methods"] += 1 if item.get("default_payment_method") else 0
                policy = item.get("auto_recharge") or {}
                if policy:
                    status_key = f"recharge_policies_{policy['status']}"
                    counts[status_key] = counts.get(status_key, 0) + 1
                for grant in item["grants"]:
                    status = grant["status"]
                    key = {"imported": "grants_imported", "already_imported": "grants_already_imported",
                           "would_import": "grants_would_import",
                           "changed_since_import": "grants_changed_since_import"}.get(status)
                    if key:
                        counts[key] += 1
                    if status in ("imported", "would_import"):
                        per = amounts.setdefault(grant["asset"], {"imported": 0, "credit_grants": 0, "balances": 0})
                        per["imported"] += grant["amount"]
                        per["balances" if grant.get("origin") == "balance" else "credit_grants"] += grant["amount"]
                for s in item["skipped"]:
                    counts["grants_skipped"] += 1
                    if len(skipped) < MAX_REPORT_DETAILS:
                        skipped.append({"stripe_customer_id": stripe_id, **s})
                for side in ("stripe_credit", "walletflow_credit"):
                    for asset, amount in (item.get(side) or {}).items():
                        per = amounts.setdefault(asset, {"imported": 0, "credit_grants": 0, "balances": 0})
                        per[side] = per.get(side, 0) + amount
                if item.get("debt"):
                    counts["debts"] += 1
                    if len(debts) < MAX_REPORT_DETAILS:
                        debts.append({"stripe_customer_id": stripe_id, **item["debt"]})
                if item.get("difference"):
                    counts["differences"] += 1
                    if len(differences) < MAX_REPORT_DETAILS:
                        differences.append({"stripe_customer_id": stripe_id, "customer_id": item.get("customer_id"),
                                            "stripe": item["stripe_credit"], "walletflow": item["walletflow_credit"],
                                            "difference": item["difference"]})
        prices = run.report.get("prices") or {"mapped": [], "unmapped": [], "stripe_prices": 0}
        return {
            "migration_id": str(run.id), "dry_run": run.dry_run, "status": run.status,
            "counts": counts, "amounts": dict(sorted(amounts.items())),
            "differences": differences, "debts": debts, "skipped_grants": skipped,
            "prices": prices, "unmapped_prices": prices.get("unmapped", []),
            "auto_recharge": {"note": AUTO_RECHARGE_NOTE, "enabled_requested": run.enable_auto_recharge,
                              "payment_methods": counts["payment_methods"],
                              "created": counts.get("recharge_policies_created", 0),
                              "would_create": counts.get("recharge_policies_would_create", 0),
                              "existing": counts.get("recharge_policies_exists", 0),
                              "skipped": counts.get("recharge_policies_skipped", 0)},
        }

    async def finish(self, migration_id: uuid.UUID) -> dict[str, Any]:
        report = await self.report(migration_id)
        report["status"] = "completed"
        await self._set(migration_id, status="completed", report=report)
        return report

    # --- cut-over -------------------------------------------------------------------------------

    async def check_cutover(self, migration_id: uuid.UUID) -> MigrationInfo:
        run = await self.get(migration_id)
        if run.dry_run:
            raise ValidationError("a dry run cannot be cut over: run the migration for real first")
        if run.status != "completed":
            raise ValidationError(f"the migration is {run.status}; cut over once it has completed")
        return run

    async def start_cutover(self, migration_id: uuid.UUID) -> MigrationInfo:
        await self.check_cutover(migration_id)
        await self._set(migration_id, cutover_status="running")
        return await self.get(migration_id)

    async def cutover_page(
        self, migration_id: uuid.UUID, source: StripeSource, cursor: str | None, page_size: int
    ) -> tuple[str | None, bool, list[dict[str, str | None]]]:
        """Cut over one page of active subscriptions: each one with a metered item on a mapped price
        whose customer was migrated gets its final invoice and ``cancel_at_period_end``."""
        subs, has_more = await source.subscriptions_page(cursor, page_size)
        async with self.engine.connect() as conn:
            mapped = set((await conn.execute(select(price_links.c.stripe_price_id))).scalars())
            linked = set((await conn.execute(select(customer_links.c.stripe_customer_id).where(
                customer_links.c.stripe_customer_id.in_({s["customer"] for s in subs} or {""})))).scalars())
        done: list[dict[str, str | None]] = []
        for sub in subs:
            prices = {_item_price(i) for i in (sub.get("items") or {}).get("data") or []}
            if not prices & mapped or sub["customer"] not in linked:
                continue
            done.append(await self._cut_over_subscription(migration_id, source, sub))
        return (subs[-1]["id"] if subs else cursor), has_more and bool(subs), done

    async def _cut_over_subscription(
        self, migration_id: uuid.UUID, source: StripeSource, sub: dict[str, Any]
    ) -> dict[str, str | None]:
        sub_id, customer = sub["id"], sub["customer"]

        async def claim(conn: AsyncConnection) -> Any:
            await conn.execute(ledger_repo._insert_ignore(conn, cutovers).values(
                stripe_subscription_id=sub_id, migration_id=migration_id, stripe_customer_id=customer,
                invoice_id=None, status="claimed", created_at=self.clock(), updated_at=self.clock()))
            return (await conn.execute(select(cutovers).where(cutovers.c.stripe_subscription_id == sub_id))).one()

        row = await in_transaction(self.engine, claim)
        invoice_id = row.invoice_id
        if invoice_id is None:
            # A crash after Stripe made the invoice but before we stored its id: find it there.
            marker = f"{migration_id}:{sub_id}"
            found = [i for i in await source.subscription_invoices(customer, sub_id)
                     if (i.get("metadata") or {}).get("walletflow_migration_cutover") == marker]
            invoice_id = found[0]["id"] if found else (await source.create_final_invoice(customer, sub_id, marker))["id"]
            await self._set_cutover(sub_id, invoice_id=invoice_id, status="invoiced")
        if row.status != "done":
            if not sub.get("cancel_at_period_end"):
                await source.cancel_at_period_end(sub_id)
            await self._set_cutover(sub_id, status="done")
        return {"subscription": sub_id, "customer": customer, "invoice": invoice_id}

    async def _set_cutover(self, sub_id: str, **values: Any) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(update(cutovers).where(cutovers.c.stripe_subscription_id == sub_id)
                               .values(**values, updated_at=self.clock()))

        await in_transaction(self.engine, work)

    async def finish_cutover(self, migration_id: uuid.UUID) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(cutovers).where(cutovers.c.migration_id == migration_id)
                                       .order_by(cutovers.c.stripe_subscription_id))).all()
        report = {"subscriptions": len(rows), "done": sum(1 for r in rows if r.status == "done"),
                  "details": [{"subscription": r.stripe_subscription_id, "customer": r.stripe_customer_id,
                               "invoice": r.invoice_id, "status": r.status} for r in rows[:MAX_REPORT_DETAILS]]}
        await self._set(migration_id, cutover_status="completed", cutover_report=report)
        return report


def _item_price(item: dict[str, Any]) -> str | None:
    price = item.get("price") or item.get("plan") or {}
    return price.get("id") if isinstance(price, dict) else price


def _by_asset(pairs: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for asset, amount in pairs:
        out[asset] = out.get(asset, 0) + int(amount)
    return dict(sorted(out.items()))


async def counts_snapshot(engine: AsyncEngine) -> dict[str, int]:
    """Row counts of the tables a migration may write (tests: a dry run changes none)."""
    tables = {"customers": ledger_repo.customers, "credit_grants": ledger_repo.grants,
              "transactions": ledger_repo.transactions, "assets": ledger_repo.assets,
              "products": cast(Table, versions).metadata.tables["products"], "price_versions": versions,
              "stripe_customer_links": customer_links, "stripe_price_links": price_links, "stripe_cutovers": cutovers,
              "auto_recharge_policies": recharge_repo.policies, "recharge_triggers": recharge_repo.triggers}
    async with engine.connect() as conn:
        return {name: int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
                for name, t in tables.items()}


