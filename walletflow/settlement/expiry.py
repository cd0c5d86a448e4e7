"""Grant expiry: move expired grant remainders to breakage, at their time, exactly once.

The ledger does the money part (``Ledger.expire_grants``: idempotent, keeps back what pending
holds still need); this module bounds the work per call, reports what moved, records the
``grant.expired`` events, and tells the workflow when the next grant is due.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.service import Ledger
from walletflow.settlement.contracts import GrantSweep
from walletflow.settlement.notify import notify_expired_grants

g, a = ledger_repo.grants, ledger_repo.accounts
#: Events are recorded for expiries posted this far back: a run repairs what a crash between an
#: expiry and its event left behind in the previous day's runs.
EVENT_LOOKBACK = dt.timedelta(days=1)


async def expire_grants(engine: AsyncEngine, as_of: dt.datetime, batch: int, max_batches: int) -> GrantSweep:
    """Expire every grant due at ``as_of`` (at most ``batch * max_batches`` of them).

    ``as_of`` is the caller's clock (the workflow's, i.e. the Temporal server's): a grant is
    expired once that clock has passed its ``expires_at``, never before.
    """
    ledger = Ledger(engine, clock=lambda: as_of)
    sweep = GrantSweep()
    grant_ids = []
    for _ in range(max_batches):
        postings = await ledger.expire_grants(limit=batch)
        grant_ids += [(p.grant_id, p.amount) for p in postings]
        if len(postings) < batch:
            break
    else:
        sweep.more = True
    sweep.expired = len(grant_ids)
    if grant_ids:
        async with engine.connect() as conn:
            assets = dict((await conn.execute(
                select(g.c.id, a.c.asset).join(a, a.c.id == g.c.account_id).where(g.c.id.in_([i for i, _ in grant_ids]))
            )).all())
        for grant_id, amount in grant_ids:
            asset = assets[grant_id]
            sweep.breakage[asset] = sweep.breakage.get(asset, 0) + amount
    sweep.events = await notify_expired_grants(engine, as_of - EVENT_LOOKBACK)
    sweep.next_expiry = await next_expiry(engine, as_of)
    return sweep


async def next_expiry(engine: AsyncEngine, after: dt.datetime) -> dt.datetime | None:
    """The soonest expiry after ``after`` of a posted grant with money left."""
    query = select(func.min(g.c.expires_at)).where(
        g.c.status == "active", g.c.remaining > 0, g.c.expires_at > after
    )
    async with engine.connect() as conn:
        value = (await conn.execute(query)).scalar_one_or_none()
    if isinstance(value, str):  # in case a driver hands back SQLite's stored text
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value
