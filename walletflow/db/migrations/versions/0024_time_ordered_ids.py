"""time-ordered ids: usage batches give their ledger transactions UUIDv7 ids, and lock their
wallets with a join

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-28

Two costs of ``wf_optimistic_ingest`` (and ``wf_ingest``) that grow with the ledger and with
concurrent batches, found with ``perf`` on the database backends during a bench.ingest-sized
replay (1,000-event batches over 1,000 customers, 2 and 4 connections):

- Random transaction ids. ``gen_random_uuid()`` put each of a batch's 1,000 transactions on a
  random leaf of three indexes (``ledger_transactions``' primary key and the transaction id
  indexes of ``ledger_entries`` and ``usage_events``). Once they outgrew ``shared_buffers``
  (128 MB by default; after about 300,000 events), nearly every insert read a leaf back in and
  wrote a dirty one out: each of the three indexes had ~375,000 block reads for ~385,000 rows. A
  UUIDv7 id (the time first, see :mod:`walletflow.ledger.ids`) appends at the right-hand edge of
  each index instead. Measured: 62-66 -> 52-53 ms of backend CPU per batch at 2 connections.
- Locking with ``a.id = ANY(w_account)``. When another batch had updated a wallet before this one
  locked it, PostgreSQL re-ran the lock's scan for that row (EvalPlanQual), and every re-run
  sorted the whole id array again (``_bt_preprocess_array_keys``): a few hundred re-runs of a
  sort of ~630 ids per batch under 4 concurrent batches. Joining the array to ``accounts`` makes
  each re-run one index probe. ``wf_lock_wallets`` (0018), which debit and hold groups lock with,
  had the same statement and gets the same change. Measured with both changes at 4 connections:
  120 -> 82 ms of backend CPU per batch.

The functions are 0023's (``wf_ingest``, ``wf_optimistic_ingest``) and 0018's
(``wf_lock_wallets``) with these edits, made on their texts below (and asserted), so that this
file says what changes.
"""

import importlib

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

_0018 = importlib.import_module("walletflow.db.migrations.versions.0018_debit_batches")
_0023 = importlib.import_module("walletflow.db.migrations.versions.0023_costs_on_events")

#: The first 13 characters of a UUIDv7's text for the current millisecond, with its version digit:
#: ``tttttttt-tttt-7``. A batch takes it once; each id adds random digits to it (below).
WF_TIME_ORDERED_ID_PREFIX = r"""
CREATE OR REPLACE FUNCTION wf_time_ordered_id_prefix() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT overlay(lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
                   PLACING '-' FROM 9 FOR 0) || '-7'
$$;
"""
# The rest of a version 4 uuid's text after its version digit (``xxx-Vxxx-xxxxxxxxxxxx``) is 74
# random bits and the variant: exactly what a UUIDv7 needs after its time and version.
_TIME_ORDERED_ID = "(v_tx_prefix || substr(gen_random_uuid()::text, 16))::uuid"
_DECLARE_PREFIX = "    -- once per batch: its transactions' ids start with it (0024)\n    v_tx_prefix text := wf_time_ordered_id_prefix();\n"

_RANDOM_TX_ID = "gen_random_uuid() AS tx_id,"
_ORDERED_TX_ID = f"{_TIME_ORDERED_ID} AS tx_id,"
_LOCK_BY_ANY = "PERFORM 1 FROM accounts a WHERE a.id = ANY({ids}) ORDER BY a.id FOR UPDATE;"
_LOCK_BY_JOIN = "PERFORM 1 FROM unnest({ids}) AS w(id) JOIN accounts a ON a.id = w.id ORDER BY a.id FOR UPDATE OF a;"


def _edited(function: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        if function.count(old) != 1:  # the texts this revision edits are frozen: fail loudly if not
            raise RuntimeError("migration 0024: a function does not have the expected text")
        function = function.replace(old, new)
    return function


WF_INGEST = _edited(
    _0023.WF_INGEST,
    ("LANGUAGE plpgsql AS $$\nBEGIN\n", f"LANGUAGE plpgsql AS $$\nDECLARE\n{_DECLARE_PREFIX}BEGIN\n"),
    (_RANDOM_TX_ID, _ORDERED_TX_ID),
)
WF_OPTIMISTIC_INGEST = _edited(
    _0023.WF_OPTIMISTIC_INGEST,
    ("    v_stale bigint;\n", f"    v_stale bigint;\n{_DECLARE_PREFIX}"),
    (_RANDOM_TX_ID, _ORDERED_TX_ID),
    (_LOCK_BY_ANY.format(ids="w_account"), _LOCK_BY_JOIN.format(ids="w_account")),
)
WF_LOCK_WALLETS = _edited(
    _0018.WF_LOCK_WALLETS, (_LOCK_BY_ANY.format(ids="v_ids"), _LOCK_BY_JOIN.format(ids="v_ids"))
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WF_TIME_ORDERED_ID_PREFIX)
        op.execute(WF_INGEST)
        op.execute(WF_OPTIMISTIC_INGEST)
        op.execute(WF_LOCK_WALLETS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_0018.WF_LOCK_WALLETS)
        op.execute(_0023.WF_OPTIMISTIC_INGEST)
        op.execute(_0023.WF_INGEST)
        op.execute("DROP FUNCTION IF EXISTS wf_time_ordered_id_prefix()")
