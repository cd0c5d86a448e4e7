"""hot rows stay hot: room on the page for a wallet's and a grant's next version, and index scans
that mark superseded versions dead

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-28

Every usage batch updates each wallet it debits (``accounts``) and each grant it draws from
(``credit_grants``): the same few thousand rows, many times a second. PostgreSQL writes each
update as a new row version, on the same page when there is room (a HOT update: no index entry,
and the chain of versions is pruned the next time the page is read), else on another page with
a new entry in every index of the table. In a bench.ingest-sized replay with full pages, one
grant update in ten was not HOT; ``ix_credit_grants_spendable`` then held about seven entries per
grant, and the batch's grant lookup (a bitmap scan, which cannot mark an entry dead the way an
index scan does) visited all of them, on about seven pages, for every wallet. Autovacuum cleans
this up between its runs; with autovacuum late, or off as on this project's CI machines, it only
grows.

This revision, on PostgreSQL:

- leaves half of each page of ``accounts`` and ``credit_grants`` free (``fillfactor = 50``), so
  an update finds room on its own page. It applies to pages written from now on; ``VACUUM FULL``
  (or ``pg_repack``) rewrites existing ones, if wanted. Both tables hold a few rows per customer;
  doubling their size costs little against the ledger;
- has the two usage batch functions use index scans instead of bitmap scans
  (``enable_bitmapscan = off``), so a probe that meets a dead version marks its index entry dead
  and later probes skip it.

Measured with the batch function replayed on fresh bench-sized databases (2 then 4 connections,
11 s each, backend CPU per 1,000-event batch): 48.6-56.8 / 54.1-58.7 ms before, 45.6-46.2 /
49.5-51.0 ms after. SQLite is unchanged (one writer, no row versions).
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

HOT_TABLES = ("accounts", "credit_grants")
FILLFACTOR = 50
BATCH_FUNCTIONS = ("wf_ingest(jsonb, timestamptz)", "wf_optimistic_ingest(jsonb, timestamptz)")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in HOT_TABLES:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")
        for function in BATCH_FUNCTIONS:
            op.execute(f"ALTER FUNCTION {function} SET enable_bitmapscan = off")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function in BATCH_FUNCTIONS:
            op.execute(f"ALTER FUNCTION {function} RESET enable_bitmapscan")
        for table in HOT_TABLES:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
