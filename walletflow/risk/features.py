"""Risk features of a top-up: the one place that says what each feature is and how it is computed.

Raw features (:class:`walletflow.risk.rules.RiskFeatures`), read from walletflow's own tables at
the moment a paid top-up is scored (``now``); amounts in minor units of the top-up's currency:

============================  ===================================================================
``amount``                    the payment being scored
``succeeded_count``           earlier paid-and-credited top-ups of the customer (same currency)
``largest_succeeded_amount``  the largest of those (0 without history)
``median_succeeded_amount``   the median of the last 100 of those (0 without history)
``started_last_hour``         top-ups the customer started in the last hour (this one excluded)
``started_last_24h``          the same over 24 hours
``failed_last_24h``           top-ups of the customer that failed (declined, abandoned) in 24 h
``account_age_h``             hours since the customer was created
``card_customers``            other customers who paid a top-up with the same card (Stripe card
                              fingerprint; fingerprints in ``WALLETFLOW_RISK_SHARED_CARD_ALLOWLIST``
                              count 0: a company card shared by a team, or a test card)
``refunds``                   earlier top-ups of the customer refunded in full or in part
``disputes``                  disputes (chargebacks) on the customer's top-ups so far
``spend_24h``                 usage spend in the last 24 hours: the customer's wallet debits of
                              kind ``usage`` and ``capture`` in the top-up's asset
``spend_daily_baseline``      average daily usage spend over the 30 days before those 24 hours
``usage_to_topup``            usage spend / paid top-ups, both over the last 90 days (0 without
                              top-ups): bounded so a busy customer's scoring does not scan years
``hour_of_day``               UTC hour (0-23) at scoring time
``auto_recharge``             1 when the top-up is an auto-recharge charge (its ``workflow_id`` is
                              the wallet's recharge workflow, :data:`AUTO_RECHARGE_PREFIX`): an
                              off-session charge of the saved card, sized by the policy to reach
                              its target, so repeated quick charges of the usual amount during
                              heavy usage are what such a wallet normally looks like; 0 when the
                              customer started the payment
============================  ===================================================================

The model sees them through :func:`vector` (:data:`MODEL_FEATURES`): logs of amounts and ages so
that a $5 and a $5,000 customer are compared by ratio, the amount as a ratio to the customer's
own median, spend velocity as the ratio of the last day to the baseline, refund rate, and the
hour as a point on a circle (23:00 is next to 00:00), and ``auto_recharge`` as is.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import uuid
from collections.abc import Iterable
from dataclasses import MISSING, asdict, fields
from typing import Any, cast

from sqlalchemy import Table, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.ledger.models import Account, Customer, LedgerEntry, LedgerTransaction
from walletflow.payments.models import TopUp, TopUpDispute, TopUpRefund
from walletflow.risk.rules import RiskFeatures

top_ups = cast(Table, TopUp.__table__)
refunds_table = cast(Table, TopUpRefund.__table__)
disputes_table = cast(Table, TopUpDispute.__table__)
customers = cast(Table, Customer.__table__)
accounts = cast(Table, Account.__table__)
entries = cast(Table, LedgerEntry.__table__)
transactions = cast(Table, LedgerTransaction.__table__)

#: Ledger transaction kinds that are the customer spending (usage events and hold captures).
SPEND_KINDS = ("usage", "capture")
#: How far back the spend baseline looks, after the last 24 hours.
BASELINE_DAYS = 30
#: How many recent paid top-ups the median is taken over.
MEDIAN_WINDOW = 100
#: The window of the usage-to-top-up ratio.
RATIO_DAYS = 90

#: The recharge workflow id's prefix (``walletflow.recharge.contracts.recharge_workflow_id``):
#: a top-up row with such a ``workflow_id`` is an auto-recharge charge.
AUTO_RECHARGE_PREFIX = "auto-recharge-"

#: The raw feature names, in the order of :class:`RiskFeatures` (CSV columns, stored JSON).
RAW_FEATURES: tuple[str, ...] = tuple(f.name for f in fields(RiskFeatures))

#: What the model sees, in this order (see :func:`vector`).
MODEL_FEATURES: tuple[str, ...] = (
    "log_amount",
    "has_history",
    "log_history_count",
    "amount_vs_median",
    "amount_vs_largest",
    "topups_1h",
    "topups_24h",
    "log_account_age_h",
    "failed_24h",
    "card_customers",
    "refunds",
    "disputes",
    "refund_rate",
    "spend_velocity",
    "log_spend_24h",
    "usage_to_topup",
    "hour_sin",
    "hour_cos",
    "auto_recharge",
)


def vector(f: RiskFeatures) -> list[float]:
    """The model's input for one top-up, in :data:`MODEL_FEATURES` order."""
    history = f.succeeded_count > 0
    hour = 2 * math.pi * (f.hour_of_day % 24) / 24
    return [
        math.log1p(f.amount),
        1.0 if history else 0.0,
        math.log1p(f.succeeded_count),
        math.log((f.amount + 1) / (f.median_succeeded_amount + 1)) if history else 0.0,
        math.log((f.amount + 1) / (f.largest_succeeded_amount + 1)) if history else 0.0,
        float(f.started_last_hour),
        float(f.started_last_24h),
        math.log1p(max(f.account_age_h, 0.0)),
        float(f.failed_last_24h),
        float(f.card_customers),
        float(f.refunds),
        float(f.disputes),
        f.refunds / max(1, f.succeeded_count),
        math.log((f.spend_24h + 1) / (f.spend_daily_baseline + 1)),
        math.log1p(f.spend_24h),
        float(f.usage_to_topup),
        math.sin(hour),
        math.cos(hour),
        float(f.auto_recharge),
    ]


def as_dict(f: RiskFeatures) -> dict[str, float]:
    """The raw features as a JSON-ready dict (stored with the decision)."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(f).items()}


def from_dict(values: dict[str, Any]) -> RiskFeatures:
    """Raw features back from a dict or CSV row (unknown keys ignored, missing ones default)."""
    kwargs: dict[str, Any] = {}
    for field in fields(RiskFeatures):
        raw = values.get(field.name)
        if raw in (None, ""):
            if field.default is MISSING:  # the oldest fields have no default: nothing known is 0
                kwargs[field.name] = 0
            continue
        # ``from __future__ import annotations`` leaves the field types as strings.
        kwargs[field.name] = float(raw) if field.type in ("float", float) else int(float(raw))
    return RiskFeatures(**kwargs)


async def topup_features(
    conn: AsyncConnection,
    top_up_id: uuid.UUID,
    now: dt.datetime,
    shared_card_allowlist: Iterable[str] = (),
) -> RiskFeatures:
    """Read a top-up's raw features from the database, as of ``now``."""
    top_up = (await conn.execute(select(top_ups).where(top_ups.c.id == top_up_id))).one()
    customer_id, currency, asset = top_up.customer_id, top_up.currency, top_up.asset
    mine = and_(top_ups.c.customer_id == customer_id, top_ups.c.id != top_up_id)

    paid = and_(mine, top_ups.c.currency == currency, top_ups.c.status == "succeeded")
    count, largest, paid_total = (
        await conn.execute(
            select(
                func.count(), func.coalesce(func.max(top_ups.c.amount), 0),
                func.coalesce(func.sum(top_ups.c.amount).filter(top_ups.c.created_at >= now - dt.timedelta(days=RATIO_DAYS)), 0),
            ).where(paid)
        )
    ).one()
    recent_amounts = (
        await conn.execute(
            select(top_ups.c.amount).where(paid).order_by(top_ups.c.created_at.desc()).limit(MEDIAN_WINDOW)
        )
    ).scalars().all()
    median = int(statistics.median(recent_amounts)) if recent_amounts else 0

    hour_ago, day_ago = now - dt.timedelta(hours=1), now - dt.timedelta(days=1)
    started_1h, started_24h, failed_24h = (
        await conn.execute(
            select(
                func.count().filter(top_ups.c.created_at >= hour_ago),
                func.count().filter(top_ups.c.created_at >= day_ago),
                func.count().filter(top_ups.c.status == "failed", top_ups.c.updated_at >= day_ago),
            ).where(mine)
        )
    ).one()

    created_at = (
        await conn.execute(select(customers.c.created_at).where(customers.c.id == customer_id))
    ).scalar_one()
    account_age_h = max(0.0, (now - created_at).total_seconds() / 3600)

    card_customers = 0
    allow = set(shared_card_allowlist)
    if top_up.card_fingerprint and top_up.card_fingerprint not in allow:
        card_customers = (
            await conn.execute(
                select(func.count(func.distinct(top_ups.c.customer_id))).where(
                    top_ups.c.card_fingerprint == top_up.card_fingerprint, top_ups.c.customer_id != customer_id
                )
            )
        ).scalar_one()

    refunded_top_ups = (
        await conn.execute(
            select(func.count(func.distinct(top_ups.c.id)))
            .select_from(top_ups.outerjoin(refunds_table, refunds_table.c.top_up_id == top_ups.c.id))
            .where(mine, (top_ups.c.status == "refunded") | refunds_table.c.id.is_not(None))
        )
    ).scalar_one()
    disputes = (
        await conn.execute(select(func.count()).where(disputes_table.c.customer_id == customer_id))
    ).scalar_one()

    spend_24h, spend_before, spend_total = await _spend(conn, customer_id, asset, now)
    return RiskFeatures(
        amount=top_up.amount,
        succeeded_count=int(count),
        largest_succeeded_amount=int(largest),
        started_last_hour=int(started_1h),
        failed_last_24h=int(failed_24h),
        median_succeeded_amount=median,
        started_last_24h=int(started_24h),
        account_age_h=account_age_h,
        card_customers=int(card_customers),
        refunds=int(refunded_top_ups),
        disputes=int(disputes),
        spend_24h=spend_24h,
        spend_daily_baseline=spend_before // BASELINE_DAYS,
        usage_to_topup=round(float(spend_total) / float(paid_total), 4) if paid_total else 0.0,
        hour_of_day=now.hour,
        auto_recharge=int(str(top_up.workflow_id or "").startswith(AUTO_RECHARGE_PREFIX)),
    )


async def _spend(
    conn: AsyncConnection, customer_id: uuid.UUID, asset: str, now: dt.datetime
) -> tuple[int, int, int]:
    """(spend in the last 24 h, spend in the 30 days before, spend in 90 days) of one wallet."""
    day_ago = now - dt.timedelta(days=1)
    baseline_from = day_ago - dt.timedelta(days=BASELINE_DAYS)
    ratio_from = now - dt.timedelta(days=RATIO_DAYS)
    spent = -entries.c.amount
    query = (
        select(
            func.coalesce(func.sum(spent).filter(entries.c.created_at >= day_ago), 0),
            func.coalesce(
                func.sum(spent).filter(entries.c.created_at >= baseline_from, entries.c.created_at < day_ago), 0
            ),
            func.coalesce(func.sum(spent), 0),
        )
        .select_from(
            entries.join(accounts, accounts.c.id == entries.c.account_id).join(
                transactions, transactions.c.id == entries.c.transaction_id
            )
        )
        .where(
            accounts.c.customer_id == customer_id,
            accounts.c.asset == asset,
            entries.c.amount < 0,
            entries.c.created_at >= ratio_from,
            transactions.c.kind.in_(SPEND_KINDS),
        )
    )
    last_day, before, total = (await conn.execute(query)).one()
    return int(last_day), int(before), int(total)
