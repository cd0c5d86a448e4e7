"""lean append-only tables on PostgreSQL: no per-row foreign-key checks, BRIN time indexes

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-28

Every usage event writes five rows (its ledger transaction, two entries, the event, its vendor
cost). Profiling ``wf_ingest`` on the bench database (1,000 events over 1,000 wallets, 73 ms per
batch) with ``auto_explain``: six foreign-key checks per event ran as six separate
``SELECT 1 ... FOR KEY SHARE`` queries in AFTER triggers, 17 ms of the 73 (23%); three b-tree
indexes on ever-growing timestamps (``ledger_transactions.created_at``,
``usage_events.occurred_at`` and ``received_at``) cost about 5 ms more.

On PostgreSQL this revision:

- drops the foreign keys of the append-only rows written on the hot paths
  (``ledger_entries.transaction_id`` and ``account_id``, ``usage_events.customer_id``,
  ``usage_costs.usage_event_id``). What they guarded is guaranteed otherwise: those rows are only
  written by the ledger's own code in the same database transaction as (or after locking) the
  row they point at; no code deletes accounts, customers or usage events, and the append-only
  triggers refuse to delete ledger transactions. ``Ledger.audit()`` now also reports entries
  whose transaction or account does not exist (``orphan_entries``), so a bug that wrote one
  would be found by the scheduled reconciliation instead of by a constraint;
- drops ``ix_ledger_entries_grant_id``, which no query uses (entries are read by transaction
  and by account; what a debit drew is read with its transaction), on both databases;
- turns the three timestamp indexes into BRIN indexes. Their readers ask for ranges (settlement
  periods by ``created_at`` / ``received_at``, margins by ``occurred_at``), which BRIN answers,
  and the columns grow with time (``occurred_at`` roughly: events arrive late by minutes, not
  months), so BRIN stays selective at a fraction of a b-tree's insert cost.

SQLite otherwise keeps its schema: it is the single-writer development database, where these
costs do not matter. Downgrade restores the constraints and b-tree indexes.
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

#: (table, constraint, column, referenced table) of the foreign keys this revision drops.
FOREIGN_KEYS = (
    ("ledger_entries", "fk_ledger_entries_transaction_id_ledger_transactions", "transaction_id", "ledger_transactions"),
    ("ledger_entries", "fk_ledger_entries_account_id_accounts", "account_id", "accounts"),
    ("usage_events", "fk_usage_events_customer_id_customers", "customer_id", "customers"),
    ("usage_costs", "fk_usage_costs_usage_event_id_usage_events", "usage_event_id", "usage_events"),
)
#: (index, table, column) of the timestamp indexes made BRIN.
TIME_INDEXES = (
    ("ix_ledger_transactions_created_at", "ledger_transactions", "created_at"),
    ("ix_usage_events_occurred_at", "usage_events", "occurred_at"),
    ("ix_usage_events_received_at", "usage_events", "received_at"),
)


#: An index no query uses; every entry paid for it.
UNUSED_INDEX = ("ix_ledger_entries_grant_id", "ledger_entries", "grant_id")


def upgrade() -> None:
    op.drop_index(UNUSED_INDEX[0], table_name=UNUSED_INDEX[1])
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, constraint, _, _ in FOREIGN_KEYS:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {constraint}")
    for index, table, column in TIME_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {index}")
        op.execute(f"CREATE INDEX {index} ON {table} USING brin ({column})")


def downgrade() -> None:
    op.create_index(UNUSED_INDEX[0], UNUSED_INDEX[1], [UNUSED_INDEX[2]])
    if op.get_bind().dialect.name != "postgresql":
        return
    for index, table, column in TIME_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {index}")
        op.execute(f"CREATE INDEX {index} ON {table} ({column})")
    for table, constraint, column, referenced in FOREIGN_KEYS:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} FOREIGN KEY ({column}) REFERENCES {referenced} (id)")
