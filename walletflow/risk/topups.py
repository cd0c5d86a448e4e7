"""Risk data of top-ups in the database: the paying card's fingerprint, the features, and the
decision stored with what it was made on. Used by the top-up score activity."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.db.engine import in_transaction
from walletflow.db.types import utcnow
from walletflow.payments.models import TopUp
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.risk.features import topup_features
from walletflow.risk.rules import RiskFeatures, RiskResult

top_ups = cast(Table, TopUp.__table__)


class TopUpRisk:
    def __init__(self, engine: AsyncEngine, gateway: StripeGateway, shared_card_allowlist: Iterable[str] = ()) -> None:
        self.engine = engine
        self.gateway = gateway
        self.allowlist = frozenset(shared_card_allowlist)

    async def record_card(self, top_up_id: uuid.UUID, payment_intent_id: str) -> str | None:
        """Store the paying card's fingerprint once (a retry finds it and asks Stripe nothing)."""
        async with self.engine.connect() as conn:
            known = (
                await conn.execute(select(top_ups.c.card_fingerprint).where(top_ups.c.id == top_up_id))
            ).scalar_one_or_none()
        if known is not None:
            return str(known)
        fingerprint = await self.gateway.card_fingerprint(payment_intent_id)
        if fingerprint is None:
            return None

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                update(top_ups)
                .where(top_ups.c.id == top_up_id, top_ups.c.card_fingerprint.is_(None))
                .values(card_fingerprint=fingerprint)
            )

        await in_transaction(self.engine, work)
        return fingerprint

    async def features(self, top_up_id: uuid.UUID) -> RiskFeatures:
        async with self.engine.connect() as conn:
            return await topup_features(conn, top_up_id, utcnow(), self.allowlist)

    async def record(self, top_up_id: uuid.UUID, result: RiskResult) -> None:
        """Store the decision with its reasons, explanations and the features behind it."""
        details = {"features": result.features, "explanations": result.explanations, "model_version": result.model_version}

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                update(top_ups).where(top_ups.c.id == top_up_id).values(
                    risk_score=result.score, risk_decision=result.decision, risk_reasons=result.reasons,
                    risk_features=details, updated_at=utcnow(),
                )
            )

        await in_transaction(self.engine, work)


async def risk_details(engine: AsyncEngine, top_up_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """What each decision was made on (features, explanations, model version), by top-up id,
    for the operator's review queue. Top-ups scored before this was stored are left out."""
    ids = list(top_up_ids)
    if not ids:
        return {}
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(top_ups.c.id, top_ups.c.risk_features).where(top_ups.c.id.in_(ids)))
        ).all()
    return {row.id: row.risk_features for row in rows if row.risk_features}
