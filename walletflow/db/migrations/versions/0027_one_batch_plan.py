"""one batch plan: ``wf_ingest`` locks the batch's wallets, releases their expired holds, and then
runs ``wf_optimistic_ingest``'s plan and writes under those locks

Revision ID: 0027
Revises: 0026
Create Date: 2026-11-28

``wf_ingest`` is where a usage batch goes when the plan ``wf_optimistic_ingest`` made before
locking went stale (0021). It had a planning statement of its own, 0017's, which 0023 and 0024
kept in step with the optimistic one, and which still joined its steps by the planner's guesses:
with the batch's size estimate forced to one row (as in 0026) it took 139 ms of backend CPU per
batch against 65. Two statements applying the same rules must also be kept the same by hand.

From this revision there is one planning statement. ``wf_ingest`` creates the wallets the batch
needs (the same statement as the optimistic path), locks them all in account id order
(``wf_lock_wallets``, which now also returns the ids it locked), releases their expired holds,
and calls ``wf_optimistic_ingest``. Under those locks nothing the plan reads can change: every
writer of a wallet, its holds and its grants locks the wallet first, and the holds that expire
at this batch's time are already released. So the optimistic function's check of its plan
passes, and the batch is exactly what ``wf_ingest`` wrote before. (A freeze does not lock the
wallet: if one lands between the plan and its check, the call fails with SQLSTATE 40001 like a
stale optimistic plan, and the batch is run again.)
"""

import importlib

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

_0024 = importlib.import_module("walletflow.db.migrations.versions.0024_time_ordered_ids")
_0026 = importlib.import_module("walletflow.db.migrations.versions.0026_linear_batch_plans")

WF_LOCK_WALLETS = _0024._edited(
    _0024.WF_LOCK_WALLETS,
    ("RETURNS void", "RETURNS uuid[]"),
    ("FOR UPDATE OF a;\nEND $$;", "FOR UPDATE OF a;\n    RETURN v_ids;  -- the wallets it locked (0027)\nEND $$;"),
)



def _statement(first: str, last: str) -> str:
    """The optimistic path's own statement from ``first`` to ``last`` (0021), not a copy of it."""
    start = _0026.WF_OPTIMISTIC_INGEST.index(first)
    return _0026.WF_OPTIMISTIC_INGEST[start:_0026.WF_OPTIMISTIC_INGEST.index(last, start) + len(last)]


_CREATE_MISSING_WALLETS = _statement("    INSERT INTO accounts", "    ON CONFLICT DO NOTHING;\n")
# Its release of the locked wallets' expired holds, moved out of its IF block, on this
# function's wallets.
_RELEASE_EXPIRED_HOLDS = "".join(
    line.removeprefix("    ") for line in
    _statement("        WITH expired AS (", "         WHERE a.id = r.account_id;\n").splitlines(keepends=True)
).replace("ANY(w_account)", "ANY(v_wallets)")
if _RELEASE_EXPIRED_HOLDS.count("ANY(v_wallets)") != 1:  # the texts this revision reuses are frozen
    raise RuntimeError("migration 0027: wf_optimistic_ingest does not have the expected text")

WF_INGEST = rf"""
CREATE OR REPLACE FUNCTION wf_ingest(p_events jsonb, p_now timestamptz)
RETURNS TABLE (idx int, outcome text, amount bigint, transaction_id uuid)
LANGUAGE plpgsql
SET enable_seqscan = off  -- every statement here reaches its rows by key
AS $$
DECLARE
    v_wallets uuid[];
BEGIN
{_CREATE_MISSING_WALLETS}
    v_wallets := wf_lock_wallets(p_events);  -- in account id order, like every other writer

    -- Released before planning, as every writer of a wallet does first: the plan then sees the
    -- wallet as its own locked check will.
{_RELEASE_EXPIRED_HOLDS}
    -- Under these locks the optimistic plan cannot go stale: its plan and writes are this batch's.
    RETURN QUERY SELECT o.idx, o.outcome, o.amount, o.transaction_id FROM wf_optimistic_ingest(p_events, p_now) o;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # A new return type: CREATE OR REPLACE cannot change it. Its callers PERFORM it.
        op.execute("DROP FUNCTION wf_lock_wallets(jsonb)")
        op.execute(WF_LOCK_WALLETS)
        op.execute(WF_INGEST)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_0024.WF_INGEST)  # then 0025's setting on it
        op.execute("ALTER FUNCTION wf_ingest(jsonb, timestamptz) SET enable_bitmapscan = off")
        op.execute("DROP FUNCTION wf_lock_wallets(jsonb)")
        op.execute(_0024.WF_LOCK_WALLETS)
