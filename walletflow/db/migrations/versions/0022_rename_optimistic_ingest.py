"""rename ``wf_ingest_optimistic`` to ``wf_optimistic_ingest``

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-28

The old name has the shape of an ``ingest``-scope API key (``wf_ingest_`` and eight or more
characters), so the log redaction (``walletflow.observability.logs``) blanked it out of every
log line that named it: the migration's own message, a database error about it. Same function,
a name no secret pattern matches.
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION wf_ingest_optimistic(jsonb, timestamptz) RENAME TO wf_optimistic_ingest")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION wf_optimistic_ingest(jsonb, timestamptz) RENAME TO wf_ingest_optimistic")
