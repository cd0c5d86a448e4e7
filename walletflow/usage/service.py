"""Usage ingestion: validate, resolve the customer, price and debit each event in real time.

Per-event outcomes never fail the batch: a malformed event is ``rejected``, an event no price
applies to is ``unmatched``, an id already stored is ``duplicate`` (with the original fee and
transaction), a short balance is ``insufficient_funds``. Only priced events that pass are
``debited``; their event row, vendor costs and ledger transaction commit together, so an event id
is never claimed without its debit (and never debited twice, however often the batch is retried).

The write is one transaction per batch: one statement on PostgreSQL (``wf_optimistic_ingest``,
which writes before it locks the wallets and checks its plan after; ``wf_ingest``, which locks
first, when that plan went stale), the same rules in Python on SQLite.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.catalog.service import Catalog
from walletflow.db.engine import in_transaction
from walletflow.db.filters import one_of
from walletflow.db.hotpath import hot_path
from walletflow.db.types import utcnow
from walletflow.errors import AlreadyExists
from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.schemas import HoldInfo
from walletflow.pricing.engine import PricedEventInput, VendorCost, pricing_context
from walletflow.usage import repository as repo
from walletflow.usage.schemas import CaptureEventIn, EventIn, EventOutcome, EventResult, PricedEvent

_event_adapter = TypeAdapter(EventIn)
_batch_adapter = TypeAdapter(list[EventIn])
#: Events may arrive late (queues, retries) but not from the future beyond clock skew.
MAX_FUTURE_SKEW = dt.timedelta(minutes=5)


class Usage:
    def __init__(self, engine: AsyncEngine, catalog: Catalog, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.catalog = catalog
        self.clock = clock
        self._server_side = engine.dialect.name == "postgresql"
        #: Batches whose unlocked plan went stale and were planned again under the locks.
        self.replanned = 0

    async def ingest(self, raw_events: Sequence[EventIn | dict[str, Any]]) -> list[EventResult]:
        """Price and debit a batch; one result per event, in order."""
        return [EventResult(**o._asdict()) for o in await self.ingest_outcomes(raw_events)]

    async def ingest_outcomes(self, raw_events: Sequence[EventIn | dict[str, Any]]) -> list[EventOutcome]:
        """``ingest``'s results as plain tuples (for the HTTP fast path, which writes them as JSON
        itself)."""
        now = self.clock()
        results: list[EventOutcome | None] = [None] * len(raw_events)
        events: list[tuple[int, EventIn]] = []
        for index, (raw, (event, error)) in enumerate(zip(raw_events, _parse_all(raw_events), strict=True)):
            if event is None:
                results[index] = EventOutcome(_raw_id(raw), status="rejected", error=error)
            elif event.occurred_at > now + MAX_FUTURE_SKEW:
                results[index] = EventOutcome(event.id, status="rejected", error="occurred_at is in the future")
            else:
                events.append((index, event))

        async with self.engine.connect() as conn:
            customers = await _resolve_customers(conn, [e for _, e in events])
            snapshot = await self.catalog.snapshot(conn, list({c for c in customers.values() if c}))

        to_write: list[PricedEvent] = []
        first_copy: dict[tuple[uuid.UUID, str], int] = {}
        repeats: list[tuple[int, int]] = []  # (index, index of the first copy of that id)
        with pricing_context():  # once per batch, not once per event
            for index, event in events:
                customer_id = customers.get(_customer_ref(event))
                if customer_id is None:
                    results[index] = EventOutcome(event.id, status="rejected", error="unknown customer")
                    continue
                pricing = snapshot.pricing_for(customer_id, event.event_type)
                if pricing is None:
                    results[index] = EventOutcome(event.id, status="unmatched", error=f"no price for event type {event.event_type!r}")
                    continue
                fee = pricing.book.price(
                    PricedEventInput(event.event_type, event.data, _costs(event)), explain=False, in_context=True
                )
                if fee.status != "priced":
                    results[index] = EventOutcome(event.id, status=fee.status, asset=fee.asset, error=fee.error)
                    continue
                if (customer_id, event.id) in first_copy:  # the same id again in one batch: a retry of it
                    repeats.append((index, first_copy[(customer_id, event.id)]))
                    continue
                first_copy[(customer_id, event.id)] = index
                to_write.append(
                    PricedEvent(index, customer_id, event, fee.asset or "", fee.amount, pricing.product_code,
                                pricing.version, event.occurred_at)
                )

        if to_write:
            outcomes = await self._write(to_write, now)
            for priced, (status, amount, tx_id) in zip(to_write, outcomes, strict=True):
                results[priced.index] = _result(priced, status, amount, tx_id)
        for index, first in repeats:
            # A repeat shares its first copy's fate; once that copy is stored, it is its duplicate.
            original = results[first]
            assert original is not None
            status = "duplicate" if original.status in ("debited", "duplicate") else original.status
            results[index] = original._replace(status=status)
        return [r for r in results if r is not None]

    async def _write(self, events: list[PricedEvent], now: dt.datetime) -> list[tuple[str, int, uuid.UUID | None]]:
        # A unique violation means a concurrent batch stored one of these events first (through a
        # wallet this batch did not lock); the whole batch rolled back, and a rerun reports it
        # as a duplicate. A deadlock (a batch writing before it locks, another locked and
        # waiting on one of its event ids) also rolled the batch back: run it again. So did a
        # plan that went stale even under the locks (a customer frozen meanwhile: a freeze does
        # not lock the wallet; migration 0027).
        for attempt in range(3):
            try:
                if self._server_side:
                    return await self._write_server_side(_payload(events), now)
                return await in_transaction(self.engine, lambda conn: repo.ingest_in_python(conn, events, now))
            except (IntegrityError, asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError,
                    asyncpg.SerializationError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _write_server_side(self, payload: str, now: dt.datetime) -> list[tuple[str, int, uuid.UUID | None]]:
        hot = hot_path(self.engine)
        try:
            return await repo.ingest_function(hot, payload, now, repo.OPTIMISTIC)
        except asyncpg.SerializationError:
            # A concurrent write changed a wallet or grant after this batch was planned (it wrote
            # nothing): plan it again under the wallet locks.
            self.replanned += 1
            return await repo.ingest_function(hot, payload, now, repo.LOCKED)


def capture_recorder(event: CaptureEventIn, received_at: dt.datetime) -> Callable[[AsyncConnection, HoldInfo], Awaitable[None]]:
    """A ``Ledger.capture(also=...)`` hook storing ``event`` as the usage the hold paid for:
    its fee is the captured amount and its debit the capture's transaction."""

    async def record(conn: AsyncConnection, hold: HoldInfo) -> None:
        try:
            await repo.insert_event(
                conn,
                {"customer_id": hold.customer_id, "event_id": event.id, "event_type": event.event_type,
                 "occurred_at": event.occurred_at or received_at, "received_at": received_at,
                 "product_code": None, "version": None, "asset": hold.asset, "amount": hold.captured_amount,
                 "transaction_id": hold.capture_transaction_id, "data": event.data},
                event.costs or [],
            )
        except IntegrityError as exc:
            raise AlreadyExists(f"event {event.id!r} is already recorded for this customer") from exc

    return record


def _parse_all(raw_events: Sequence[EventIn | dict[str, Any]]) -> list[tuple[EventIn | None, str | None]]:
    """Every event validated, or why not. A batch of valid dicts is validated in one call (a
    thousand separate calls cost about as much again); any invalid event sends the batch down
    the per-event path, which names each bad event's first error."""
    if all(isinstance(raw, dict) for raw in raw_events):
        try:
            return [(event, None) for event in _batch_adapter.validate_python(raw_events)]
        except PydanticValidationError:
            pass
    return [_parse(raw) for raw in raw_events]


def _parse(raw: EventIn | dict[str, Any]) -> tuple[EventIn | None, str | None]:
    if isinstance(raw, EventIn):
        return raw, None
    try:
        return _event_adapter.validate_python(raw), None
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        return None, f"{where}: {first['msg']}"


def _raw_id(raw: object) -> str:
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else ""


def _customer_ref(event: EventIn) -> tuple[str, str]:
    if event.customer_id is not None:
        return ("id", str(event.customer_id))
    return ("external", event.external_customer_id or "")


async def _resolve_customers(conn: AsyncConnection, events: list[EventIn]) -> dict[tuple[str, str], uuid.UUID | None]:
    ids = {e.customer_id for e in events if e.customer_id is not None}
    externals = {e.external_customer_id for e in events if e.external_customer_id is not None}
    found: dict[tuple[str, str], uuid.UUID | None] = {}
    c, dialect = ledger_repo.customers, conn.dialect.name
    if ids:
        for row in await conn.execute(select(c.c.id).where(one_of(c.c.id, ids, dialect))):
            found[("id", str(row.id))] = row.id
    if externals:
        for row in await conn.execute(select(c.c.id, c.c.external_id).where(one_of(c.c.external_id, externals, dialect))):
            found[("external", row.external_id)] = row.id
    return found


def _costs(event: EventIn) -> list[VendorCost] | None:
    if not event.costs:
        return None
    return [VendorCost(c.vendor, c.asset, c.amount) for c in event.costs]


def _payload(events: list[PricedEvent]) -> str:
    """The batch as one JSON document for ``wf_ingest`` (which derives keys, hashes and ids).

    orjson writes datetimes itself and is several times faster than ``json`` here; ``json``
    remains the fallback for what orjson refuses (integers beyond 64 bits in ``data``). Customer
    ids are written as strings: they come from asyncpg as its own UUID type, which orjson
    refuses, and every batch used to fall back to ``json`` for that alone.
    """
    rows = [
        {"idx": p.index, "customer_id": str(p.customer_id), "event_id": p.event.id,
         "event_type": p.event.event_type, "occurred_at": p.occurred_at, "asset": p.asset,
         "amount": p.amount, "product_code": p.product_code, "version": p.version, "data": p.event.data,
         "costs": repo.stored_costs(p.event.costs)}
        for p in events
    ]
    try:
        return orjson.dumps(rows).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(rows, separators=(",", ":"), default=_json_default)


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _result(p: PricedEvent, status: str, amount: int, tx_id: uuid.UUID | None) -> EventOutcome:
    if status == "wallet_frozen":
        return EventOutcome(p.event.id, "rejected", p.asset, amount, error="wallet_frozen")
    return EventOutcome(p.event.id, status, p.asset, amount, tx_id)  # type: ignore[arg-type]
