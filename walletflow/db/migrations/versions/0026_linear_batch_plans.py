"""linear batch plans: the usage batch's planning statement cannot join two of its steps with a
nested loop, whatever the planner guesses their sizes to be

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-28

``wf_optimistic_ingest`` plans a batch in one statement of chained CTEs (events, duplicates,
wallets, the walk over each wallet's debits, grants, draws), joined to one another on the event's
index or the wallet. PostgreSQL cannot estimate a CTE's size: it guesses 100 rows for the batch
(``jsonb_to_recordset``) and derives the rest, and the guess for the duplicates step grows with
``usage_events``. Once it passed the guess for the batch, every later step was estimated at one
row, and a connection that planned the statement then joined debits to grants and wallets to
debits with nested loops: 1,000 x 632 and 1,000 x 1,000 comparisons per batch. In bench.ingest
the connections opened for its 4-client phase (after 250,000 events) did this: 165 against
83 ms per planning statement, and 13,000-18,000 events/s instead of 23,000. With the batch's
size estimate forced to one row (``pg_proc.prorows`` of ``jsonb_to_recordset``, in a scratch
database) every connection does it: 186 ms of backend CPU per batch against 54.

This revision redefines ``wf_optimistic_ingest`` (0024's, with 0025's setting) so that the
planning statement runs with nested loops off. Its lookups by key stay nested loops: each is a
``LATERAL`` subquery with ``LIMIT 1`` (the duplicate lookup becomes one), which only a nested loop
can run. Every join between its steps becomes a hash join, whatever the estimates. With nested
loops off, a plan's estimated cost includes PostgreSQL's penalty for a disabled method, which
made it JIT-compile the statement on every call (1.4 s): the function also sets ``jit = off``.
Measured with the estimate forced to one row: 58.5 ms of backend CPU per batch (186 before);
with normal estimates, no change (54.2 against 54.9 ms).

``wf_ingest`` (the locked path, run only when a batch's plan went stale) keeps its plan: its
planning statement also updates grants and wallets by key, which nested loops must do.
"""

import importlib

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

_0024 = importlib.import_module("walletflow.db.migrations.versions.0024_time_ordered_ids")

_SETTINGS = "SET enable_seqscan = off\nSET enable_hashjoin = on\nSET enable_mergejoin = on\n"
_SETTINGS_0026 = _SETTINGS + (
    "SET enable_bitmapscan = off\n"  # 0025
    "-- switched off for the planning statement alone (below); restored when the function returns\n"
    "SET enable_nestloop = on\n"
    "-- a disabled join method's penalty is in every estimated cost: never worth compiling for\n"
    "SET jit = off\n"
)
_DUPLICATES_BY_JOIN = """          FROM ev JOIN usage_events u ON u.customer_id = ev.customer_id AND u.event_id = ev.event_id
"""
_DUPLICATES_BY_KEY = """          FROM ev CROSS JOIN LATERAL (SELECT ue.amount, ue.transaction_id FROM usage_events ue
                                       WHERE ue.customer_id = ev.customer_id AND ue.event_id = ev.event_id
                                       LIMIT 1) u
"""
_PLAN_START = "    -- Plan and write, unlocked."
_PLAN_START_0026 = (
    "    -- No nested loop between two steps of the plan (0026): only the LATERAL key lookups.\n"
    "    PERFORM set_config('enable_nestloop', 'off', true);\n" + _PLAN_START
)
_PLAN_END = "(SELECT array_agg(g.grant_id) AS g, array_agg(g.total) AS t FROM grant_totals g) gg;\n"
_PLAN_END_0026 = _PLAN_END + "    PERFORM set_config('enable_nestloop', 'on', true);\n"

WF_OPTIMISTIC_INGEST = _0024._edited(
    _0024.WF_OPTIMISTIC_INGEST,
    (_SETTINGS, _SETTINGS_0026),
    (_DUPLICATES_BY_JOIN, _DUPLICATES_BY_KEY),
    (_PLAN_START, _PLAN_START_0026),
    (_PLAN_END, _PLAN_END_0026),
)
_SIGNATURE = "wf_optimistic_ingest(jsonb, timestamptz)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WF_OPTIMISTIC_INGEST)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # 0024's definition (CREATE OR REPLACE sets the whole list of settings), then 0025's.
        op.execute(_0024.WF_OPTIMISTIC_INGEST)
        op.execute(f"ALTER FUNCTION {_SIGNATURE} SET enable_bitmapscan = off")
