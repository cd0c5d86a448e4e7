"""The webhooks core: the endpoint registry, the dispatcher's fan-out from the outbox, and the
bookkeeping of deliveries. Knows nothing about Temporal (activities call it).

Delivery is at least once: an event is fanned out exactly once per endpoint (a unique
(event, endpoint) pair, inserted in the same transaction that marks the event dispatched), and
each delivery is POSTed until an endpoint answers 2xx or the attempts run out. A receiver may
still see one event twice (an answer lost on the way back), so it dedupes on the event ``id``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.db.engine import in_transaction
from walletflow.db.types import utcnow
from walletflow.errors import NotFound, ValidationError, WalletflowError
from walletflow.webhooks import balance_alerts
from walletflow.webhooks import repository as repo
from walletflow.webhooks.models import DELIVERY_STATUSES
from walletflow.webhooks.outbox import EVENT_TYPES
from walletflow.webhooks.schemas import (
    AttemptInfo,
    DeliveryInfo,
    DeliveryJob,
    EndpointCreated,
    EndpointInfo,
    UnstartedDelivery,
    event_payload,
)
from walletflow.webhooks.signing import new_secret

MAX_URL_LENGTH = 2000
MAX_ERROR_LENGTH = 500


class DeliveryNotRetryable(WalletflowError):
    code = "delivery_not_retryable"
    status = 409
    title = "Only a failed or canceled delivery can be retried"


def validate_url(url: str) -> str:
    """An absolute ``http``/``https`` URL with a host, no spaces or control characters."""
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"url is longer than {MAX_URL_LENGTH} characters", field="url")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValidationError("url must not contain spaces or control characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise ValidationError(f"url is not a valid URL: {exc}", field="url") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("url must start with http:// or https://", field="url")
    if not parts.hostname:
        raise ValidationError("url must name a host", field="url")
    if port == 0:
        raise ValidationError("url has port 0", field="url")
    return url


def validate_events(names: list[str]) -> list[str]:
    """Known event types, or ``["*"]`` for all; duplicates dropped, order kept."""
    if not names:
        raise ValidationError("events must name at least one event type, or '*'", field="events")
    unknown = [n for n in names if n != "*" and n not in EVENT_TYPES]
    if unknown:
        raise ValidationError(
            f"unknown event types: {', '.join(sorted(set(unknown)))}; known: {', '.join(sorted(EVENT_TYPES))} or '*'",
            field="events",
        )
    if "*" in names:
        return ["*"]
    return list(dict.fromkeys(names))


def _endpoint(row: Row[Any]) -> EndpointInfo:
    return EndpointInfo(
        id=row.id, url=row.url, events=list(row.events), description=row.description, enabled=row.enabled,
        created_at=row.created_at, updated_at=row.updated_at,
    )


def _delivery(row: Row[Any], attempts: list[AttemptInfo] | None = None) -> DeliveryInfo:
    return DeliveryInfo(
        id=row.id, endpoint_id=row.endpoint_id, event_id=row.event_id, event_type=row.event_type,
        status=row.status, attempt_count=row.attempts, last_status_code=row.last_status_code,
        last_error=row.last_error, workflow_started_at=row.workflow_started_at, finished_at=row.finished_at,
        created_at=row.created_at, updated_at=row.updated_at, attempts=attempts or [],
    )


class Webhooks:
    """One per process (API, worker); every method is its own database transaction."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    # --- the registry -------------------------------------------------------------------------

    async def create_endpoint(self, url: str, events: list[str], description: str | None = None) -> EndpointCreated:
        """Register an endpoint; the answer carries its new secret, which is never shown again."""
        endpoint_id, secret, now = uuid.uuid4(), new_secret(), self.clock()
        values = {
            "id": endpoint_id, "url": validate_url(url), "events": validate_events(events), "secret": secret,
            "description": description, "enabled": True, "created_at": now, "updated_at": now,
        }

        async def work(conn: AsyncConnection) -> EndpointInfo:
            await repo.insert_endpoint(conn, values)
            return _endpoint(_found(await repo.get_endpoint(conn, endpoint_id), endpoint_id))

        return EndpointCreated(await in_transaction(self.engine, work), secret)

    async def get_endpoint(self, endpoint_id: uuid.UUID) -> EndpointInfo:
        async with self.engine.connect() as conn:
            return _endpoint(_found(await repo.get_endpoint(conn, endpoint_id), endpoint_id))

    async def list_endpoints(self, limit: int, after: tuple[dt.datetime, uuid.UUID] | None = None) -> list[EndpointInfo]:
        async with self.engine.connect() as conn:
            return [_endpoint(r) for r in await repo.list_endpoints(conn, limit, after)]

    async def set_enabled(self, endpoint_id: uuid.UUID, enabled: bool) -> EndpointInfo:
        """Disable (or enable again) an endpoint. A disabled one gets no new deliveries, and its
        pending ones are canceled at their next attempt."""

        async def work(conn: AsyncConnection) -> EndpointInfo:
            if not await repo.update_endpoint(conn, endpoint_id, enabled=enabled, updated_at=self.clock()):
                raise NotFound(f"webhook endpoint {endpoint_id} not found")
            return _endpoint(_found(await repo.get_endpoint(conn, endpoint_id), endpoint_id))

        return await in_transaction(self.engine, work)

    async def rotate_secret(self, endpoint_id: uuid.UUID) -> EndpointCreated:
        """A new secret, effective for the next attempt; the old one stops verifying at once."""
        secret = new_secret()

        async def work(conn: AsyncConnection) -> EndpointInfo:
            if not await repo.update_endpoint(conn, endpoint_id, secret=secret, updated_at=self.clock()):
                raise NotFound(f"webhook endpoint {endpoint_id} not found")
            return _endpoint(_found(await repo.get_endpoint(conn, endpoint_id), endpoint_id))

        return EndpointCreated(await in_transaction(self.engine, work), secret)

    async def list_deliveries(
        self, endpoint_id: uuid.UUID, limit: int, before: tuple[dt.datetime, uuid.UUID] | None = None,
        status: str | None = None,
    ) -> list[DeliveryInfo]:
        """An endpoint's deliveries, newest first, each with its attempts in order."""
        if status is not None and status not in DELIVERY_STATUSES:
            raise ValidationError(f"status must be one of {', '.join(DELIVERY_STATUSES)}", field="status")
        async with self.engine.connect() as conn:
            _found(await repo.get_endpoint(conn, endpoint_id), endpoint_id)
            rows = await repo.list_deliveries(conn, endpoint_id, limit, before, status)
            by_delivery: dict[uuid.UUID, list[AttemptInfo]] = {}
            for a in await repo.attempts_for(conn, [r.id for r in rows]):
                by_delivery.setdefault(a.delivery_id, []).append(
                    AttemptInfo(a.attempt, a.status_code, a.error, a.duration_ms, a.attempted_at)
                )
        return [_delivery(r, by_delivery.get(r.id)) for r in rows]

    async def get_delivery(self, delivery_id: uuid.UUID) -> DeliveryInfo:
        async with self.engine.connect() as conn:
            row = await repo.get_delivery(conn, delivery_id)
            if row is None:
                raise NotFound(f"webhook delivery {delivery_id} not found")
            found = [
                AttemptInfo(a.attempt, a.status_code, a.error, a.duration_ms, a.attempted_at)
                for a in await repo.attempts_for(conn, [delivery_id])
            ]
        return _delivery(row, found)

    # --- the dispatcher -----------------------------------------------------------------------

    async def fan_out(self, max_events: int) -> tuple[int, int]:
        """Claim up to ``max_events`` undispatched events and create one delivery per event and
        subscribed endpoint, marking the events dispatched in the same transaction.

        Returns (events claimed, deliveries created). An endpoint only receives events created
        after it was registered. A crash before the commit leaves the events pending; a crash
        after it leaves deliveries whose workflows :meth:`unstarted_deliveries` finds.
        """
        if max_events <= 0:
            return 0, 0

        async def work(conn: AsyncConnection) -> tuple[int, int]:
            # Wallets that reached zero since the last run become events first (same commit).
            await balance_alerts.promote(conn, max_events, self.clock())
            claimed = await repo.claim_pending_events(conn, max_events)
            if not claimed:
                return 0, 0
            now = self.clock()
            targets = await repo.enabled_endpoints(conn)
            rows = [
                {
                    "id": uuid.uuid4(), "event_id": e.id, "endpoint_id": t.id, "event_type": e.event_type,
                    "status": "pending", "attempts": 0, "created_at": now, "updated_at": now,
                }
                for e in claimed
                for t in targets
                if ("*" in t.events or e.event_type in t.events) and t.created_at <= e.created_at
            ]
            created = await repo.insert_deliveries(conn, rows)
            await repo.mark_dispatched(conn, [e.id for e in claimed], now)
            return len(claimed), created

        return await in_transaction(self.engine, work)

    async def unstarted_deliveries(self, limit: int) -> list[UnstartedDelivery]:
        """Deliveries whose workflow no run has recorded as started, oldest first (including
        those an interrupted run created or started without recording it)."""
        async with self.engine.connect() as conn:
            return [UnstartedDelivery(r.id, r.customer_id) for r in await repo.unstarted_deliveries(conn, limit)]

    async def mark_started(self, delivery_ids: list[uuid.UUID]) -> None:
        if delivery_ids:
            now = self.clock()
            await in_transaction(self.engine, lambda conn: repo.mark_started(conn, delivery_ids, now))

    # --- one delivery -------------------------------------------------------------------------

    async def job(self, delivery_id: uuid.UUID) -> DeliveryJob:
        """What one attempt sends: the endpoint (with its secret) and the event's exact body."""
        async with self.engine.connect() as conn:
            row = await repo.delivery_job_row(conn, delivery_id)
        if row is None:
            raise NotFound(f"webhook delivery {delivery_id} not found")
        payload = event_payload(row.event_id, row.event_type, row.created_at, row.customer_id, row.data)
        # Compact and key-sorted: the same event gives the same bytes on every attempt.
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        return DeliveryJob(
            delivery_id=row.id, status=row.status, endpoint_enabled=row.enabled, url=row.url, secret=row.secret,
            event_id=row.event_id, event_type=row.event_type, body=body,
        )

    async def record_attempt(
        self, delivery_id: uuid.UUID, status_code: int | None, error: str | None, duration_ms: int, delivered: bool,
    ) -> int:
        """Append the attempt to the log and update the delivery, in one transaction; returns
        the attempt's number (counted per delivery, so an operator's retry continues it)."""
        now = self.clock()
        error = error[:MAX_ERROR_LENGTH] if error else None

        async def work(conn: AsyncConnection) -> int:
            # The increment locks the delivery row first, so the number is never handed out twice.
            attempt = await repo.next_attempt(conn, delivery_id)
            await repo.insert_attempt(conn, {
                "delivery_id": delivery_id, "attempt": attempt, "status_code": status_code, "error": error,
                "duration_ms": duration_ms, "attempted_at": now,
            })
            values: dict[str, Any] = {"last_status_code": status_code, "last_error": error, "updated_at": now}
            if delivered:
                values.update(status="delivered", finished_at=now)
            await repo.update_delivery(conn, delivery_id, only_if_status="pending", **values)
            return attempt

        return await in_transaction(self.engine, work)

    async def reopen(self, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> DeliveryInfo:
        """An operator's retry of a ``failed`` or ``canceled`` delivery: back to ``pending``,
        and the next dispatch run starts its workflow again (a new run with the same id)."""
        now = self.clock()

        async def work(conn: AsyncConnection) -> None:
            row = await repo.get_delivery(conn, delivery_id)
            if row is None or row.endpoint_id != endpoint_id:
                raise NotFound(f"webhook delivery {delivery_id} not found for endpoint {endpoint_id}")
            if row.status not in ("failed", "canceled"):
                raise DeliveryNotRetryable(
                    f"delivery {delivery_id} is {row.status}; only failed or canceled ones can be retried",
                    status_now=row.status,
                )
            await repo.reopen_delivery(conn, delivery_id, now)

        await in_transaction(self.engine, work)
        return await self.get_delivery(delivery_id)

    async def finish(self, delivery_id: uuid.UUID, status: str) -> DeliveryInfo:
        """Mark a pending delivery ``failed`` or ``canceled``; a finished one stays as it is."""
        if status not in ("failed", "canceled"):
            raise ValidationError("a delivery can only be finished as failed or canceled", field="status")
        now = self.clock()
        await in_transaction(
            self.engine,
            lambda conn: repo.update_delivery(
                conn, delivery_id, only_if_status="pending", status=status, finished_at=now, updated_at=now
            ),
        )
        return await self.get_delivery(delivery_id)


def _found(row: Row[Any] | None, endpoint_id: uuid.UUID) -> Row[Any]:
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return row
